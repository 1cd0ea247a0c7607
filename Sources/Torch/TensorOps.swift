// TensorOps.swift — shape, elementwise math, operators and reductions (torch.Tensor methods).
import CTorch

extension Tensor {
    // MARK: shape

    public func reshape(_ shape: [Int]) throws -> Tensor {
        let s = i64(shape)
        return try make { tc_reshape(handle, s, Int32(s.count), $0) }
    }
    public func view(_ shape: [Int]) throws -> Tensor {
        let s = i64(shape)
        return try make { tc_view(handle, s, Int32(s.count), $0) }
    }
    public func permute(_ dims: [Int]) throws -> Tensor {
        let d = i64(dims)
        return try make { tc_permute(handle, d, Int32(d.count), $0) }
    }
    public func transpose(_ d0: Int, _ d1: Int) throws -> Tensor {
        try make { tc_transpose(handle, Int64(d0), Int64(d1), $0) }
    }
    /// Removes all size-1 dimensions, or only `dim`.
    public func squeeze(_ dim: Int? = nil) throws -> Tensor {
        try make { tc_squeeze(handle, Int64(dim ?? 0), dim == nil ? 1 : 0, $0) }
    }
    public func unsqueeze(_ dim: Int) throws -> Tensor { try make { tc_unsqueeze(handle, Int64(dim), $0) } }
    public func flatten(_ start: Int = 0, _ end: Int = -1) throws -> Tensor {
        try make { tc_flatten(handle, Int64(start), Int64(end), $0) }
    }
    public func expand(_ shape: [Int]) throws -> Tensor {
        let s = i64(shape)
        return try make { tc_expand(handle, s, Int32(s.count), $0) }
    }
    public func repeated(_ repeats: [Int]) throws -> Tensor {
        let r = i64(repeats)
        return try make { tc_repeat(handle, r, Int32(r.count), $0) }
    }
    public func repeatInterleave(_ repeats: Int, dim: Int) throws -> Tensor {
        try make { tc_repeat_interleave(handle, Int64(repeats), Int64(dim), $0) }
    }
    public static func cat(_ tensors: [Tensor], dim: Int = 0) throws -> Tensor {
        let hs: [OpaquePointer?] = tensors.map { $0.handle }
        return try withExtendedLifetime(tensors) { try make { tc_cat(hs, Int32(hs.count), Int64(dim), $0) } }
    }
    public static func stack(_ tensors: [Tensor], dim: Int = 0) throws -> Tensor {
        let hs: [OpaquePointer?] = tensors.map { $0.handle }
        return try withExtendedLifetime(tensors) { try make { tc_stack(hs, Int32(hs.count), Int64(dim), $0) } }
    }
    public func chunk(_ chunks: Int, dim: Int = 0) throws -> [Tensor] {
        var outs = [OpaquePointer?](repeating: nil, count: Swift.max(chunks, 1))
        var count: Int32 = 0
        try check(tc_chunk(handle, Int64(chunks), Int64(dim), &outs, Int32(outs.count), &count))
        return outs.prefix(Int(count)).map { Tensor(owning: $0!) }
    }
    public func split(_ sizes: [Int], dim: Int = 0) throws -> [Tensor] {
        let s = i64(sizes)
        var outs = [OpaquePointer?](repeating: nil, count: s.count)
        try check(tc_split(handle, s, Int32(s.count), Int64(dim), &outs))
        return outs.map { Tensor(owning: $0!) }
    }
    public func narrow(_ dim: Int, start: Int, length: Int) throws -> Tensor {
        try make { tc_narrow(handle, Int64(dim), Int64(start), Int64(length), $0) }
    }
    /// self[..., start:end:step, ...] along `dim`; `end` nil means to the end.
    public func slice(_ dim: Int, _ start: Int, _ end: Int? = nil, step: Int = 1) throws -> Tensor {
        try make { tc_slice(handle, Int64(dim), Int64(start), Int64(end ?? Int(Int64.max)), Int64(step), $0) }
    }
    public func select(_ dim: Int, _ index: Int) throws -> Tensor {
        try make { tc_select(handle, Int64(dim), Int64(index), $0) }
    }
    public func indexSelect(_ dim: Int, _ index: Tensor) throws -> Tensor {
        try make { tc_index_select(handle, Int64(dim), index.handle, $0) }
    }
    public func gather(_ dim: Int, _ index: Tensor) throws -> Tensor {
        try make { tc_gather(handle, Int64(dim), index.handle, $0) }
    }
    public func flip(_ dims: [Int]) throws -> Tensor {
        let d = i64(dims)
        return try make { tc_flip(handle, d, Int32(d.count), $0) }
    }
    public enum PadMode: Int32, Sendable { case constant = 0, reflect = 1, replicate = 2 }
    /// F.pad: `pad` lists (left, right) pairs starting from the last dimension.
    public func pad(_ pad: [Int], mode: PadMode = .constant, value: Double = 0) throws -> Tensor {
        let p = i64(pad)
        return try make { tc_pad(handle, p, Int32(p.count), mode.rawValue, value, $0) }
    }
    public func maskedFill(_ mask: Tensor, _ value: Double) throws -> Tensor {
        try make { tc_masked_fill(handle, mask.handle, value, $0) }
    }
    public static func `where`(_ cond: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        try make { tc_where(cond.handle, a.handle, b.handle, $0) }
    }
    public func tril(_ diagonal: Int = 0) throws -> Tensor { try make { tc_tril(handle, Int64(diagonal), $0) } }

    // MARK: elementwise

    func unary(_ op: Int) throws -> Tensor { try make { tc_unary(Int32(op), handle, $0) } }
    func binary(_ op: Int, _ other: Tensor) throws -> Tensor { try make { tc_binary(Int32(op), handle, other.handle, $0) } }
    func binary(_ op: Int, _ s: Double, reverse: Bool = false) throws -> Tensor {
        try make { tc_binary_scalar(Int32(op), handle, s, reverse ? 1 : 0, $0) }
    }

    public func neg() throws -> Tensor { try unary(TC_U_NEG) }
    public func abs() throws -> Tensor { try unary(TC_U_ABS) }
    public func sqrt() throws -> Tensor { try unary(TC_U_SQRT) }
    public func rsqrt() throws -> Tensor { try unary(TC_U_RSQRT) }
    public func exp() throws -> Tensor { try unary(TC_U_EXP) }
    public func log() throws -> Tensor { try unary(TC_U_LOG) }
    public func sin() throws -> Tensor { try unary(TC_U_SIN) }
    public func cos() throws -> Tensor { try unary(TC_U_COS) }
    public func floor() throws -> Tensor { try unary(TC_U_FLOOR) }
    public func ceil() throws -> Tensor { try unary(TC_U_CEIL) }
    public func round() throws -> Tensor { try unary(TC_U_ROUND) }
    public func trunc() throws -> Tensor { try unary(TC_U_TRUNC) }
    public func sign() throws -> Tensor { try unary(TC_U_SIGN) }
    public func reciprocal() throws -> Tensor { try unary(TC_U_RECIPROCAL) }
    public func square() throws -> Tensor { try unary(TC_U_SQUARE) }
    public func sigmoid() throws -> Tensor { try unary(TC_U_SIGMOID) }
    public func tanh() throws -> Tensor { try unary(TC_U_TANH) }
    public func relu() throws -> Tensor { try unary(TC_U_RELU) }
    public func silu() throws -> Tensor { try unary(TC_U_SILU) }
    /// Exact (erf) GELU, or the tanh approximation.
    public func gelu(approximateTanh: Bool = false) throws -> Tensor { try unary(approximateTanh ? TC_U_GELU_TANH : TC_U_GELU) }
    /// x · sigmoid(1.702 x), CLIP's activation.
    public func quickGelu() throws -> Tensor { try unary(TC_U_QUICK_GELU) }
    public func softplus() throws -> Tensor { try unary(TC_U_SOFTPLUS) }
    public func logSigmoid() throws -> Tensor { try unary(TC_U_LOGSIGMOID) }
    public func erf() throws -> Tensor { try unary(TC_U_ERF) }
    public func log1p() throws -> Tensor { try unary(TC_U_LOG1P) }
    public func expm1() throws -> Tensor { try unary(TC_U_EXPM1) }
    public func logicalNot() throws -> Tensor { try unary(TC_U_LOGICAL_NOT) }
    public func isnan() throws -> Tensor { try unary(TC_U_ISNAN) }
    public func isfinite() throws -> Tensor { try unary(TC_U_ISFINITE) }
    public func leakyRelu(_ slope: Double = 0.01) throws -> Tensor { try make { tc_leaky_relu(handle, slope, $0) } }

    public func pow(_ e: Tensor) throws -> Tensor { try binary(TC_B_POW, e) }
    public func pow(_ e: Double) throws -> Tensor { try binary(TC_B_POW, e) }
    public func maximum(_ o: Tensor) throws -> Tensor { try binary(TC_B_MAXIMUM, o) }
    public func minimum(_ o: Tensor) throws -> Tensor { try binary(TC_B_MINIMUM, o) }
    public func remainder(_ o: Double) throws -> Tensor { try binary(TC_B_REMAINDER, o) }
    public func floorDivide(_ o: Double) throws -> Tensor { try binary(TC_B_FLOOR_DIVIDE, o) }
    public func atan2(_ o: Tensor) throws -> Tensor { try binary(TC_B_ATAN2, o) }
    public func logicalAnd(_ o: Tensor) throws -> Tensor { try binary(TC_B_LOGICAL_AND, o) }
    public func logicalOr(_ o: Tensor) throws -> Tensor { try binary(TC_B_LOGICAL_OR, o) }
    public func eq(_ o: Tensor) throws -> Tensor { try binary(TC_B_EQ, o) }
    public func eq(_ s: Double) throws -> Tensor { try binary(TC_B_EQ, s) }
    public func ne(_ o: Tensor) throws -> Tensor { try binary(TC_B_NE, o) }
    public func ne(_ s: Double) throws -> Tensor { try binary(TC_B_NE, s) }
    public func lt(_ o: Tensor) throws -> Tensor { try binary(TC_B_LT, o) }
    public func lt(_ s: Double) throws -> Tensor { try binary(TC_B_LT, s) }
    public func le(_ o: Tensor) throws -> Tensor { try binary(TC_B_LE, o) }
    public func le(_ s: Double) throws -> Tensor { try binary(TC_B_LE, s) }
    public func gt(_ o: Tensor) throws -> Tensor { try binary(TC_B_GT, o) }
    public func gt(_ s: Double) throws -> Tensor { try binary(TC_B_GT, s) }
    public func ge(_ o: Tensor) throws -> Tensor { try binary(TC_B_GE, o) }
    public func ge(_ s: Double) throws -> Tensor { try binary(TC_B_GE, s) }

    public func clamp(min: Double? = nil, max: Double? = nil) throws -> Tensor {
        try make { tc_clamp(handle, min == nil ? 0 : 1, min ?? 0, max == nil ? 0 : 1, max ?? 0, $0) }
    }
    public func matmul(_ o: Tensor) throws -> Tensor { try make { tc_matmul(handle, o.handle, $0) } }
    public func bmm(_ o: Tensor) throws -> Tensor { try make { tc_bmm(handle, o.handle, $0) } }
    /// beta · self + alpha · (b1 @ b2)
    public func baddbmm(_ b1: Tensor, _ b2: Tensor, beta: Double = 1, alpha: Double = 1) throws -> Tensor {
        try make { tc_baddbmm(handle, b1.handle, b2.handle, beta, alpha, $0) }
    }

    // MARK: operators (broadcasting; Double operands keep the tensor's dtype, like Python scalars)

    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(TC_B_ADD, b) }
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(TC_B_SUB, b) }
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(TC_B_MUL, b) }
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(TC_B_DIV, b) }
    public static func + (a: Tensor, s: Double) throws -> Tensor { try a.binary(TC_B_ADD, s) }
    public static func - (a: Tensor, s: Double) throws -> Tensor { try a.binary(TC_B_SUB, s) }
    public static func * (a: Tensor, s: Double) throws -> Tensor { try a.binary(TC_B_MUL, s) }
    public static func / (a: Tensor, s: Double) throws -> Tensor { try a.binary(TC_B_DIV, s) }
    public static func + (s: Double, a: Tensor) throws -> Tensor { try a.binary(TC_B_ADD, s, reverse: true) }
    public static func - (s: Double, a: Tensor) throws -> Tensor { try a.binary(TC_B_SUB, s, reverse: true) }
    public static func * (s: Double, a: Tensor) throws -> Tensor { try a.binary(TC_B_MUL, s, reverse: true) }
    public static func / (s: Double, a: Tensor) throws -> Tensor { try a.binary(TC_B_DIV, s, reverse: true) }
    public static prefix func - (a: Tensor) throws -> Tensor { try a.neg() }

    // MARK: reductions

    enum Reduction: Int32 { case sum = 0, mean, amax, amin, prod, any, all, logsumexp }
    func reduce(_ op: Reduction, _ dims: [Int], keepDim: Bool) throws -> Tensor {
        let d = i64(dims)
        return try make { tc_reduce(op.rawValue, handle, d, Int32(d.count), keepDim ? 1 : 0, $0) }
    }

    /// Sum over `dims` (all dimensions when empty).
    public func sum(_ dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.sum, dims, keepDim: keepDim) }
    public func mean(_ dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.mean, dims, keepDim: keepDim) }
    public func amax(_ dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.amax, dims, keepDim: keepDim) }
    public func amin(_ dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.amin, dims, keepDim: keepDim) }
    public func prod(_ dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.prod, dims, keepDim: keepDim) }
    public func any(_ dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.any, dims, keepDim: keepDim) }
    public func all(_ dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.all, dims, keepDim: keepDim) }
    public func logsumexp(_ dims: [Int], keepDim: Bool = false) throws -> Tensor { try reduce(.logsumexp, dims, keepDim: keepDim) }

    /// Variance with Bessel-style `correction` (1 = unbiased, as torch.var's default).
    public func variance(_ dims: [Int] = [], correction: Int = 1, keepDim: Bool = false) throws -> Tensor {
        let d = i64(dims)
        return try make { tc_var(handle, d, Int32(d.count), Int64(correction), keepDim ? 1 : 0, 0, $0) }
    }
    public func std(_ dims: [Int] = [], correction: Int = 1, keepDim: Bool = false) throws -> Tensor {
        let d = i64(dims)
        return try make { tc_var(handle, d, Int32(d.count), Int64(correction), keepDim ? 1 : 0, 1, $0) }
    }
    /// (values, indices) of the maximum along `dim`.
    public func max(dim: Int, keepDim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        var v: OpaquePointer?, i: OpaquePointer?
        try check(tc_max_dim(handle, Int64(dim), keepDim ? 1 : 0, 0, &v, &i))
        return (Tensor(owning: v!), Tensor(owning: i!))
    }
    public func min(dim: Int, keepDim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        var v: OpaquePointer?, i: OpaquePointer?
        try check(tc_max_dim(handle, Int64(dim), keepDim ? 1 : 0, 1, &v, &i))
        return (Tensor(owning: v!), Tensor(owning: i!))
    }
    public func max() throws -> Tensor { try amax() }
    public func min() throws -> Tensor { try amin() }
    public func argmax(dim: Int? = nil, keepDim: Bool = false) throws -> Tensor {
        try make { tc_argmax(handle, Int64(dim ?? 0), dim == nil ? 0 : 1, keepDim ? 1 : 0, 0, $0) }
    }
    public func argmin(dim: Int? = nil, keepDim: Bool = false) throws -> Tensor {
        try make { tc_argmax(handle, Int64(dim ?? 0), dim == nil ? 0 : 1, keepDim ? 1 : 0, 1, $0) }
    }
    public func norm(_ p: Double = 2, dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        let d = i64(dims)
        return try make { tc_norm(handle, p, d, Int32(d.count), keepDim ? 1 : 0, $0) }
    }
    public func softmax(dim: Int) throws -> Tensor { try make { tc_softmax(handle, Int64(dim), 0, $0) } }
    public func logSoftmax(dim: Int) throws -> Tensor { try make { tc_softmax(handle, Int64(dim), 1, $0) } }
    /// Stable sort along `dim`: (values, indices).
    public func sort(dim: Int = -1, descending: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        var v: OpaquePointer?, i: OpaquePointer?
        try check(tc_sort(handle, Int64(dim), descending ? 1 : 0, &v, &i))
        return (Tensor(owning: v!), Tensor(owning: i!))
    }
    public func argsort(dim: Int = -1, descending: Bool = false) throws -> Tensor {
        try sort(dim: dim, descending: descending).indices
    }
    public func cumsum(dim: Int) throws -> Tensor { try make { tc_cumsum(handle, Int64(dim), $0) } }
    public func allClose(_ other: Tensor, rtol: Double = 1e-5, atol: Double = 1e-8) throws -> Bool {
        var r: Int32 = 0
        try check(tc_allclose(handle, other.handle, rtol, atol, &r))
        return r != 0
    }
    /// max |self − other| as a Double.
    public func maxAbsDiff(_ other: Tensor) throws -> Double {
        try (self.to(.float64) - other.to(.float64)).abs().amax().item()
    }
}
