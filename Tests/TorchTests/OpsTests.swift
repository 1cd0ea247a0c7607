// OpsTests.swift — tensor ops against hand-computed values: arithmetic with broadcasting,
// elementwise math, reductions, shape ops, interpolation, normalisation, activations, losses,
// attention, dtype round trips and creation (seeded random numbers included).
import Foundation
import Testing
@testable import Torch

// MARK: helpers shared by the TorchTests files

/// A float32 tensor from Double literals.
func ft(_ values: [Double], _ shape: [Int]? = nil) throws -> Tensor {
    try Tensor(values.map { Float($0) }, shape: shape)
}

/// A float64 tensor.
func dt(_ values: [Double], _ shape: [Int]? = nil) throws -> Tensor {
    try Tensor(values, shape: shape)
}

/// All values as Doubles.
func dbl(_ t: Tensor) throws -> [Double] { try t.toArray(Double.self) }

/// Elementwise |a − e| ≤ tol · max(1, |e|), and equal counts.
func expectClose(_ actual: [Double], _ expected: [Double], tol: Double = 1e-6,
                 _ what: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "\(what): \(actual.count) values, expected \(expected.count)",
            sourceLocation: sourceLocation)
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        let ok = Swift.abs(a - e) <= tol * Swift.max(1, Swift.abs(e)) || (a.isNaN && e.isNaN) || a == e
        #expect(ok, "\(what)[\(i)]: got \(a), expected \(e)", sourceLocation: sourceLocation)
    }
}

/// Checks shape and values of a tensor in one go.
func expectTensor(_ t: Tensor, shape: [Int], _ expected: [Double], tol: Double = 1e-6, _ what: String = "",
                  sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(t.shape == shape, "\(what): shape \(t.shape), expected \(shape)", sourceLocation: sourceLocation)
    expectClose(try dbl(t), expected, tol: tol, what, sourceLocation: sourceLocation)
}

func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

// MARK: arithmetic

@Suite("Ops: arithmetic")
struct ArithmeticTests {
    let a: Tensor  // [[1, 2, 3], [4, 5, 6]]

    init() throws { a = try ft([1, 2, 3, 4, 5, 6], [2, 3]) }

    @Test func broadcastingBinaryOps() throws {
        let row = try ft([10, 20, 30])            // (3)
        let col = try ft([1, 2], [2, 1])           // (2, 1)
        try expectTensor(try a + row, shape: [2, 3], [11, 22, 33, 14, 25, 36], "add row")
        try expectTensor(try a - col, shape: [2, 3], [0, 1, 2, 2, 3, 4], "sub col")
        try expectTensor(try a * ft([2, 0, -1]), shape: [2, 3], [2, 0, -3, 8, 0, -6], "mul row")
        try expectTensor(try a / ft([2, 4], [2, 1]), shape: [2, 3], [0.5, 1, 1.5, 1, 1.25, 1.5], "div col")
        // (2,1) with (3) broadcasts to (2,3): an outer sum.
        try expectTensor(try col + row, shape: [2, 3], [11, 21, 31, 12, 22, 32], "outer")
        // Incompatible shapes are an error, not a crash.
        #expect(throws: TorchError.self) { try a + ft([1, 2]) }
    }

    @Test func scalarOpsOnBothSides() throws {
        try expectTensor(try a + 1, shape: [2, 3], [2, 3, 4, 5, 6, 7])
        try expectTensor(try 1 + a, shape: [2, 3], [2, 3, 4, 5, 6, 7])
        try expectTensor(try a - 1, shape: [2, 3], [0, 1, 2, 3, 4, 5])
        try expectTensor(try 10 - a, shape: [2, 3], [9, 8, 7, 6, 5, 4])
        try expectTensor(try a * 2, shape: [2, 3], [2, 4, 6, 8, 10, 12])
        try expectTensor(try 2 * a, shape: [2, 3], [2, 4, 6, 8, 10, 12])
        try expectTensor(try a / 2, shape: [2, 3], [0.5, 1, 1.5, 2, 2.5, 3])
        try expectTensor(try 12 / a, shape: [2, 3], [12, 6, 4, 3, 2.4, 2])
        try expectTensor(try -a, shape: [2, 3], [-1, -2, -3, -4, -5, -6])
        // A Double operand keeps the tensor's dtype, like a Python scalar.
        #expect(try (a * 2).dtype == .float32)
        #expect(try (dt([1]) * 2).dtype == .float64)
    }

    @Test func matmulBmmBaddbmm() throws {
        let m1 = try ft([1, 2, 3, 4], [2, 2]), m2 = try ft([5, 6, 7, 8], [2, 2])
        try expectTensor(try m1.matmul(m2), shape: [2, 2], [19, 22, 43, 50], "matmul")
        try expectTensor(try ft([1, 2]).matmul(m2), shape: [2], [19, 22], "vector @ matrix")
        // (2,3) @ (3,1)
        try expectTensor(try a.matmul(ft([1, 0, -1], [3, 1])), shape: [2, 1], [-2, -2], "rect")
        let b1 = try Tensor.stack([m1, try ft([1, 0, 0, 1], [2, 2])])
        let b2 = try Tensor.stack([m2, try ft([2, 3, 4, 5], [2, 2])])
        try expectTensor(try b1.bmm(b2), shape: [2, 2, 2], [19, 22, 43, 50, 2, 3, 4, 5], "bmm")
        // Broadcast batched matmul: (2,2,2) @ (2,2).
        try expectTensor(try b1.matmul(m2), shape: [2, 2, 2], [19, 22, 43, 50, 5, 6, 7, 8], "batched matmul")
        let input = try Tensor.ones([2, 2, 2])
        try expectTensor(try input.baddbmm(b1, b2, beta: 0.5, alpha: 2), shape: [2, 2, 2],
                         [38.5, 44.5, 86.5, 100.5, 4.5, 6.5, 8.5, 10.5], "baddbmm")
    }

    @Test func elementwiseMath() throws {
        try expectTensor(try ft([1, 2, 3]).pow(2), shape: [3], [1, 4, 9], "pow scalar")
        try expectTensor(try ft([2, 3]).pow(ft([3, 2])), shape: [2], [8, 9], "pow tensor")
        try expectTensor(try ft([4, 9, 16]).sqrt(), shape: [3], [2, 3, 4], "sqrt")
        try expectTensor(try ft([4, 0.25]).rsqrt(), shape: [2], [0.5, 2], "rsqrt")
        try expectTensor(try ft([0, 1, -1]).exp(), shape: [3], [1, M_E, 1 / M_E], "exp")
        try expectTensor(try ft([1, M_E, 0.5]).log(), shape: [3], [0, 1, Foundation.log(0.5)], "log")
        try expectTensor(try ft([0, Double.pi / 2, Double.pi / 6]).sin(), shape: [3], [0, 1, 0.5], "sin")
        try expectTensor(try ft([0, Double.pi, Double.pi / 3]).cos(), shape: [3], [1, -1, 0.5], "cos")
        try expectTensor(try ft([-1.5, 2, 0]).abs(), shape: [3], [1.5, 2, 0], "abs")
        let c = try ft([-2, 0.5, 3])
        try expectTensor(try c.clamp(min: -1, max: 1), shape: [3], [-1, 0.5, 1], "clamp")
        try expectTensor(try c.clamp(min: 0), shape: [3], [0, 0.5, 3], "clamp min")
        try expectTensor(try c.clamp(max: 0), shape: [3], [-2, 0, 0], "clamp max")
        try expectTensor(try ft([-1.5, 1.5, 2.7, -0.2]).floor(), shape: [4], [-2, 1, 2, -1], "floor")
        // Round half to even, as torch.round.
        try expectTensor(try ft([0.5, 1.5, 2.5, -1.5, 2.6, -2.4]).round(), shape: [6], [0, 2, 2, -2, 3, -2], "round")
    }

    @Test func whereAndComparisons() throws {
        let x = try ft([1, 2, 3]), y = try ft([3, 2, 1])
        #expect(try x.lt(y).toArray(Bool.self) == [true, false, false])
        #expect(try x.le(y).toArray(Bool.self) == [true, true, false])
        #expect(try x.gt(y).toArray(Bool.self) == [false, false, true])
        #expect(try x.ge(y).toArray(Bool.self) == [false, true, true])
        #expect(try x.eq(y).toArray(Bool.self) == [false, true, false])
        #expect(try x.ne(y).toArray(Bool.self) == [true, false, true])
        #expect(try x.gt(1.5).toArray(Bool.self) == [false, true, true])
        #expect(try x.eq(3).toArray(Bool.self) == [false, false, true])
        #expect(try x.lt(y).dtype == .bool)
        let w = try Tensor.where(x.lt(y), x, try ft([10, 20, 30]))
        try expectTensor(w, shape: [3], [1, 20, 30], "where")
        // where broadcasts a (3) condition against (2,3) values.
        let w2 = try Tensor.where(try Tensor([true, false, true]), a, try Tensor.zeros([2, 3]))
        try expectTensor(w2, shape: [2, 3], [1, 0, 3, 4, 0, 6], "where broadcast")
    }
}

// MARK: reductions

@Suite("Ops: reductions")
struct ReductionTests {
    let x: Tensor  // [[1, 2, 3], [4, 5, 6]]
    init() throws { x = try ft([1, 2, 3, 4, 5, 6], [2, 3]) }

    @Test func sumMeanVarStd() throws {
        try expectTensor(try x.sum(), shape: [], [21], "sum")
        try expectTensor(try x.sum([0]), shape: [3], [5, 7, 9], "sum dim 0")
        try expectTensor(try x.sum([1], keepDim: true), shape: [2, 1], [6, 15], "sum dim 1 keep")
        try expectTensor(try x.mean(), shape: [], [3.5], "mean")
        try expectTensor(try x.mean([1]), shape: [2], [2, 5], "mean dim 1")
        // Σ(x − 3.5)² = 17.5: unbiased 17.5 / 5, biased 17.5 / 6.
        try expectTensor(try x.variance(), shape: [], [3.5], "var")
        try expectTensor(try x.variance(correction: 0), shape: [], [17.5 / 6], "var biased")
        try expectTensor(try x.variance([1]), shape: [2], [1, 1], "var dim 1")
        try expectTensor(try x.std(), shape: [], [Double(3.5).squareRoot()], "std")
        try expectTensor(try x.std([0], correction: 0), shape: [3], [1.5, 1.5, 1.5], "std dim 0 biased")
    }

    @Test func maxMinArgmax() throws {
        let y = try ft([1, 9, 3, 7, 2, 8], [2, 3])
        #expect(try y.max().item() == 9)
        #expect(try y.min().item() == 1)
        let (mv, mi) = try y.max(dim: 1)
        try expectTensor(mv, shape: [2], [9, 8], "max values")
        #expect(try mi.toArray(Int64.self) == [1, 2])
        let (nv, ni) = try y.min(dim: 0, keepDim: true)
        try expectTensor(nv, shape: [1, 3], [1, 2, 3], "min values")
        #expect(try ni.toArray(Int64.self) == [0, 1, 0])
        #expect(try y.argmax().itemInt() == 1)  // flattened
        #expect(try y.argmax(dim: 1).toArray(Int64.self) == [1, 2])
        #expect(try y.argmax(dim: 0).toArray(Int64.self) == [1, 0, 1])
        #expect(try y.argmin().itemInt() == 0)
        try expectTensor(try y.amax([0]), shape: [3], [7, 9, 8], "amax")
    }

    @Test func norms() throws {
        let v = try ft([3, -4])
        try expectTensor(try v.norm(), shape: [], [5], "L2")
        try expectTensor(try v.norm(1), shape: [], [7], "L1")
        let m = try ft([3, 4, 6, 8], [2, 2])
        try expectTensor(try m.norm(2, dims: [1]), shape: [2], [5, 10], "L2 rows")
        try expectTensor(try m.norm(2, dims: [1], keepDim: true), shape: [2, 1], [5, 10], "L2 rows keep")
    }

    @Test func softmaxLogSoftmaxCumsum() throws {
        let s = try ft([0, Foundation.log(2), Foundation.log(3)])
        try expectTensor(try s.softmax(dim: 0), shape: [3], [1.0 / 6, 2.0 / 6, 3.0 / 6], "softmax")
        try expectTensor(try s.logSoftmax(dim: 0), shape: [3],
                         [Foundation.log(1.0 / 6), Foundation.log(2.0 / 6), Foundation.log(0.5)], "log_softmax")
        // Softmax over rows of a matrix: each row sums to one, shift invariance.
        let m = try ft([1, 2, 3, 101, 102, 103], [2, 3]).softmax(dim: 1)
        let r = try dbl(m)
        expectClose(Array(r[0..<3]), Array(r[3..<6]), tol: 1e-6, "shift invariance")
        try expectTensor(try m.sum([1]), shape: [2], [1, 1], "rows sum to 1")
        try expectTensor(try ft([1, 2, 3, 4]).cumsum(dim: 0), shape: [4], [1, 3, 6, 10], "cumsum")
        try expectTensor(try x.cumsum(dim: 1), shape: [2, 3], [1, 3, 6, 4, 9, 15], "cumsum dim 1")
        try expectTensor(try x.cumsum(dim: 0), shape: [2, 3], [1, 2, 3, 5, 7, 9], "cumsum dim 0")
    }

    @Test func anyAll() throws {
        let b = try Tensor([true, false, false, false], shape: [2, 2])
        #expect(try b.any().toArray(Bool.self) == [true])
        #expect(try b.all().toArray(Bool.self) == [false])
        #expect(try b.any([1]).toArray(Bool.self) == [true, false])
        #expect(try b.all([0]).toArray(Bool.self) == [false, false])
        #expect(try Tensor([true, true]).all().toArray(Bool.self) == [true])
        #expect(try x.gt(0).all().toArray(Bool.self) == [true])
        #expect(try x.gt(5).any().toArray(Bool.self) == [true])
        #expect(try x.gt(6).any().toArray(Bool.self) == [false])
    }
}

// MARK: shape ops

@Suite("Ops: shape")
struct ShapeTests {
    func ints(_ t: Tensor) throws -> [Int64] { try t.toArray(Int64.self) }

    @Test func reshapePermuteTranspose() throws {
        let x = try Tensor.arange(6).reshape([2, 3])
        #expect(x.shape == [2, 3])
        #expect(x.dtype == .int64)
        #expect(try ints(x) == [0, 1, 2, 3, 4, 5])
        #expect(try x.reshape([3, -1]).shape == [3, 2])
        let t = try x.transpose(0, 1)
        #expect(t.shape == [3, 2])
        #expect(!t.isContiguous)
        #expect(try ints(t) == [0, 3, 1, 4, 2, 5])
        #expect(try t.contiguous().isContiguous)
        #expect(try x.view([6]).shape == [6])
        let y = try Tensor.arange(24).reshape([2, 3, 4])
        let p = try y.permute([2, 0, 1])
        #expect(p.shape == [4, 2, 3])
        var expected: [Int64] = []
        for k in 0..<4 { for i in 0..<2 { for j in 0..<3 { expected.append(Int64(i * 12 + j * 4 + k)) } } }
        #expect(try ints(p) == expected)
        #expect(try y.flatten(1).shape == [2, 12])
        #expect(try y.select(1, 2).shape == [2, 4])
        #expect(try ints(y.select(1, 2)) == [8, 9, 10, 11, 20, 21, 22, 23])
    }

    @Test func squeezeUnsqueezeExpandRepeat() throws {
        let z = try Tensor.zeros([1, 3, 1, 2])
        #expect(try z.squeeze().shape == [3, 2])
        #expect(try z.squeeze(2).shape == [1, 3, 2])
        #expect(try z.squeeze(1).shape == [1, 3, 1, 2])  // size 3: unchanged
        let v = try ft([1, 2, 3])
        #expect(try v.unsqueeze(0).shape == [1, 3])
        #expect(try v.unsqueeze(-1).shape == [3, 1])
        try expectTensor(try ft([1, 2], [2, 1]).expand([2, 3]), shape: [2, 3], [1, 1, 1, 2, 2, 2], "expand")
        try expectTensor(try ft([1, 2]).expand([2, -1]), shape: [2, 2], [1, 2, 1, 2], "expand -1")
        try expectTensor(try ft([1, 2]).repeated([3]), shape: [6], [1, 2, 1, 2, 1, 2], "repeat")
        try expectTensor(try ft([1, 2], [1, 2]).repeated([2, 2]), shape: [2, 4], [1, 2, 1, 2, 1, 2, 1, 2], "repeat 2d")
        try expectTensor(try ft([1, 2]).repeatInterleave(2, dim: 0), shape: [4], [1, 1, 2, 2], "repeat_interleave")
        try expectTensor(try ft([1, 2, 3, 4], [2, 2]).repeatInterleave(2, dim: 1), shape: [2, 4],
                         [1, 1, 2, 2, 3, 3, 4, 4], "repeat_interleave dim 1")
    }

    @Test func catStackChunkSplit() throws {
        let p = try ft([1, 2], [1, 2]), q = try ft([3, 4], [1, 2])
        try expectTensor(try Tensor.cat([p, q]), shape: [2, 2], [1, 2, 3, 4], "cat 0")
        try expectTensor(try Tensor.cat([p, q], dim: 1), shape: [1, 4], [1, 2, 3, 4], "cat 1")
        let u = try ft([1, 2]), w = try ft([3, 4])
        try expectTensor(try Tensor.stack([u, w]), shape: [2, 2], [1, 2, 3, 4], "stack 0")
        try expectTensor(try Tensor.stack([u, w], dim: 1), shape: [2, 2], [1, 3, 2, 4], "stack 1")
        let chunks = try Tensor.arange(5).chunk(3)
        #expect(chunks.count == 3)
        #expect(try chunks.map { try ints($0) } == [[0, 1], [2, 3], [4]])
        let parts = try Tensor.arange(6).split([1, 2, 3])
        #expect(try parts.map { try ints($0) } == [[0], [1, 2], [3, 4, 5]])
        let cols = try Tensor.arange(6).reshape([2, 3]).split([2, 1], dim: 1)
        #expect(try cols.map { try ints($0) } == [[0, 1, 3, 4], [2, 5]])
        #expect(throws: TorchError.self) { try Tensor.arange(6).split([1, 2]) }  // sizes must add up
    }

    @Test func narrowSliceIndexSelectGatherFlip() throws {
        let x = try Tensor.arange(6).reshape([2, 3])
        #expect(try ints(x.narrow(1, start: 1, length: 2)) == [1, 2, 4, 5])
        let r = try Tensor.arange(10)
        #expect(try ints(r.slice(0, 1, 8, step: 3)) == [1, 4, 7])
        #expect(try ints(r.slice(0, 7)) == [7, 8, 9])
        #expect(try ints(r.slice(0, -3)) == [7, 8, 9])
        #expect(try ints(x.slice(1, 0, 3, step: 2)) == [0, 2, 3, 5])
        #expect(try ints(x.indexSelect(1, Tensor([Int64(2), 0]))) == [2, 0, 5, 3])
        #expect(try ints(x.indexSelect(0, Tensor([Int64(1), 1]))) == [3, 4, 5, 3, 4, 5])
        let g = try ft([1, 2, 3, 4], [2, 2]).gather(1, Tensor([Int64(0), 0, 1, 0], shape: [2, 2]))
        try expectTensor(g, shape: [2, 2], [1, 1, 4, 3], "gather")
        #expect(try ints(x.flip([1])) == [2, 1, 0, 5, 4, 3])
        #expect(try ints(x.flip([0, 1])) == [5, 4, 3, 2, 1, 0])
        #expect(throws: TorchError.self) { try x.indexSelect(1, Tensor([Int64(3)])) }  // out of range
    }

    @Test func padModes() throws {
        let x = try ft([1, 2, 3], [1, 3])
        try expectTensor(try x.pad([2, 1], value: 9), shape: [1, 6], [9, 9, 1, 2, 3, 9], "constant")
        try expectTensor(try x.pad([2, 1], mode: .reflect), shape: [1, 6], [3, 2, 1, 2, 3, 2], "reflect")
        try expectTensor(try x.pad([2, 1], mode: .replicate), shape: [1, 6], [1, 1, 1, 2, 3, 3], "replicate")
        // 2-D padding (left, right, top, bottom) on (N, C, H, W).
        let m = try ft([1, 2, 3, 4], [1, 1, 2, 2])
        try expectTensor(try m.pad([1, 0, 0, 1]), shape: [1, 1, 3, 3], [0, 1, 2, 0, 3, 4, 0, 0, 0], "constant 2d")
        try expectTensor(try m.pad([1, 0, 0, 1], mode: .reflect), shape: [1, 1, 3, 3],
                         [2, 1, 2, 4, 3, 4, 2, 1, 2], "reflect 2d")
        try expectTensor(try m.pad([1, 0, 0, 1], mode: .replicate), shape: [1, 1, 3, 3],
                         [1, 1, 2, 3, 3, 4, 3, 3, 4], "replicate 2d")
        // Reflect padding must be smaller than the dimension.
        #expect(throws: TorchError.self) { try x.pad([3, 0], mode: .reflect) }
    }
}

// MARK: nn functional

@Suite("Ops: nn functional")
struct FunctionalTests {
    @Test func interpolateNearestAndBilinear() throws {
        let x = try ft([1, 2, 3, 4], [1, 1, 2, 2])
        try expectTensor(try F.interpolate(x, size: (4, 4), mode: .nearest), shape: [1, 1, 4, 4],
                         [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4], "nearest")
        try expectTensor(try F.interpolate(x, scaleFactor: (1, 2), mode: .nearest), shape: [1, 1, 2, 4],
                         [1, 1, 2, 2, 3, 3, 4, 4], "nearest by scale")
        // Bilinear, half-pixel centres: source x = (i + 0.5) / 2 − 0.5 = −0.25, 0.25, 0.75, 1.25 (clamped).
        let r = try ft([0, 4], [1, 1, 1, 2])
        try expectTensor(try F.interpolate(r, size: (1, 4), mode: .bilinear), shape: [1, 1, 1, 4],
                         [0, 1, 3, 4], "bilinear")
        try expectTensor(try F.interpolate(r, size: (1, 3), mode: .bilinear, alignCorners: true), shape: [1, 1, 1, 3],
                         [0, 2, 4], "bilinear align corners")
        // 2x2 → 3x3 with aligned corners: the centre is the mean of the four.
        try expectTensor(try F.interpolate(x, size: (3, 3), mode: .bilinear, alignCorners: true), shape: [1, 1, 3, 3],
                         [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4], "bilinear 2d")
        #expect(throws: TorchError.self) { try F.interpolate(x) }
    }

    @Test func groupNormValues() throws {
        // (1, 4, 1, 1), 2 groups: [1, 3] → mean 2, var 1; [2, 6] → mean 4, var 4.
        let x = try ft([1, 3, 2, 6], [1, 4, 1, 1])
        try expectTensor(try F.groupNorm(x, groups: 2, weight: nil, bias: nil, eps: 0), shape: [1, 4, 1, 1],
                         [-1, 1, -1, 1], "plain")
        let y = try F.groupNorm(x, groups: 2, weight: try ft([1, 2, 3, 4]), bias: try ft([0, 0, 1, 1]), eps: 0)
        try expectTensor(y, shape: [1, 4, 1, 1], [-1, 2, -2, 5], "affine")
        // eps enters under the square root: [1, 3] with eps 1 → ±1/√2.
        let z = try F.groupNorm(x, groups: 2, weight: nil, bias: nil, eps: 1)
        expectClose(Array(try dbl(z)[0..<2]), [-1 / Double(2.0).squareRoot(), 1 / Double(2.0).squareRoot()], tol: 1e-6, "eps")
        // One group over spatial values: (1, 1, 2, 2) = [0, 2, 4, 6] → mean 3, var 5.
        let s = try F.groupNorm(try ft([0, 2, 4, 6], [1, 1, 2, 2]), groups: 1, weight: nil, bias: nil, eps: 0)
        let k = 1 / Double(5.0).squareRoot()
        try expectTensor(s, shape: [1, 1, 2, 2], [-3 * k, -k, k, 3 * k], "spatial")
    }

    @Test func layerNormValues() throws {
        let x = try ft([1, 2, 3, 2, 4, 6], [2, 3])
        let c = Double(1.5).squareRoot()  // 1 / √(2/3)
        try expectTensor(try F.layerNorm(x, normalizedShape: [3], weight: nil, bias: nil, eps: 0), shape: [2, 3],
                         [-c, 0, c, -c, 0, c], "plain")
        let y = try F.layerNorm(x, normalizedShape: [3], weight: try ft([1, 1, 2]), bias: try ft([0, 1, 0]), eps: 0)
        try expectTensor(y, shape: [2, 3], [-c, 1, 2 * c, -c, 1, 2 * c], "affine")
        // Over both dims: [1..6] mean 3.5, var 35/12.
        let z = try F.layerNorm(try ft([1, 2, 3, 4, 5, 6], [1, 2, 3]), normalizedShape: [2, 3], weight: nil, bias: nil, eps: 0)
        let sd = (35.0 / 12).squareRoot()
        try expectTensor(z, shape: [1, 2, 3], [1, 2, 3, 4, 5, 6].map { ($0 - 3.5) / sd }, "2 dims")
    }

    @Test func activations() throws {
        let xs: [Double] = [-3, -1, -0.5, 0, 0.5, 1, 2, 25]
        let x = try dt(xs)
        let exact = xs.map { $0 * 0.5 * (1 + Foundation.erf($0 / Double(2.0).squareRoot())) }
        let tanhApprox = xs.map { 0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }
        try expectTensor(try x.gelu(), shape: [8], exact, tol: 1e-12, "gelu exact")
        try expectTensor(try x.gelu(approximateTanh: true), shape: [8], tanhApprox, tol: 1e-12, "gelu tanh")
        // The two really are different functions (≈1.6e-4 apart at 1).
        let d = try x.gelu().maxAbsDiff(x.gelu(approximateTanh: true))
        #expect(d > 1e-5 && d < 1e-3)
        #expect(Swift.abs(exact[5] - 0.8413447460685429) < 1e-12)
        try expectTensor(try x.quickGelu(), shape: [8], xs.map { $0 * sigmoid(1.702 * $0) }, tol: 1e-12, "quick gelu")
        try expectTensor(try x.silu(), shape: [8], xs.map { $0 * sigmoid($0) }, tol: 1e-12, "silu")
        // softplus: log(1 + eˣ), linear above the threshold 20.
        try expectTensor(try x.softplus(), shape: [8], xs.map { $0 > 20 ? $0 : Foundation.log1p(Foundation.exp($0)) },
                         tol: 1e-12, "softplus")
        try expectTensor(try x.sigmoid(), shape: [8], xs.map(sigmoid), tol: 1e-12, "sigmoid")
        try expectTensor(try x.relu(), shape: [8], xs.map { Swift.max($0, 0) }, tol: 0, "relu")
        try expectTensor(try x.leakyRelu(0.1), shape: [8], xs.map { $0 < 0 ? 0.1 * $0 : $0 }, tol: 1e-15, "leaky relu")
        try expectTensor(try x.tanh(), shape: [8], xs.map { Foundation.tanh($0) }, tol: 1e-12, "tanh")
    }

    @Test func losses() throws {
        let a = try ft([1, 2, 3, 0.5]), b = try ft([1, 4, 0, 0])
        try expectTensor(try F.mseLoss(a, b), shape: [], [(0 + 4 + 9 + 0.25) / 4], "mse")
        try expectTensor(try F.mseLoss(a, b, reduction: .sum), shape: [], [13.25], "mse sum")
        try expectTensor(try F.mseLoss(a, b, reduction: .none), shape: [4], [0, 4, 9, 0.25], "mse none")
        try expectTensor(try F.l1Loss(a, b), shape: [], [5.5 / 4], "l1")
        // smooth L1 (β = 1): 0.5 d² when |d| < 1, else |d| − 0.5 → [0, 1.5, 2.5, 0.125].
        try expectTensor(try F.smoothL1Loss(a, b, reduction: .none), shape: [4], [0, 1.5, 2.5, 0.125], "smooth l1")
        try expectTensor(try F.smoothL1Loss(a, b), shape: [], [4.125 / 4], "smooth l1 mean")
        // β = 2: 0.5 d² / 2 when |d| < 2 → [0, 1, 2, 0.0625].
        try expectTensor(try F.smoothL1Loss(a, b, reduction: .none, beta: 2), shape: [4], [0, 1, 2, 0.0625], "β 2")
        // Cross-entropy with class indices: logsumexp(row) − row[target].
        let logits = try ft([1, 2, 3, 1, 1, 1], [2, 3])
        let target = try Tensor([Int64(2), 0])
        let l0 = Foundation.log(M_E + M_E * M_E + M_E * M_E * M_E) - 3, l1 = Foundation.log(3.0)
        try expectTensor(try F.crossEntropy(logits, target), shape: [], [(l0 + l1) / 2], "ce mean")
        try expectTensor(try F.crossEntropy(logits, target, reduction: .none), shape: [2], [l0, l1], "ce none")
        // With class probabilities: one-hot equals the index form.
        let probs = try ft([0, 0, 1, 1, 0, 0], [2, 3])
        try expectTensor(try F.crossEntropy(logits, probs), shape: [], [(l0 + l1) / 2], "ce probs")
        // Label smoothing 0.3 on uniform logits changes nothing (every class costs log 3).
        try expectTensor(try F.crossEntropy(try Tensor.zeros([1, 3]), try Tensor([Int64(1)]), labelSmoothing: 0.3),
                         shape: [], [l1], "ce smoothing")
    }

    @Test func attentionMatchesManualSoftmax() throws {
        // A 1-query example by hand: scores [1, 0] → weights [e, 1] / (1 + e).
        let q = try ft([1, 0], [1, 1, 1, 2]), k = try ft([1, 0, 0, 1], [1, 1, 2, 2])
        let v = try ft([1, 2, 3, 4], [1, 1, 2, 2])
        let w0 = M_E / (1 + M_E), w1 = 1 / (1 + M_E)
        try expectTensor(try F.scaledDotProductAttention(q, k, v, scale: 1), shape: [1, 1, 1, 2],
                         [w0 * 1 + w1 * 3, w0 * 2 + w1 * 4], tol: 1e-6, "by hand")

        // Multi-head (B=2, H=3, L=4, S=5, E=8) against softmax(QKᵀ·scale)V built from ops.
        let g = try Generator(seed: 7)
        let Q = try Tensor.randn([2, 3, 4, 8], generator: g)
        let K = try Tensor.randn([2, 3, 5, 8], generator: g)
        let V = try Tensor.randn([2, 3, 5, 8], generator: g)
        func manual(_ scale: Double, mask: Tensor? = nil) throws -> Tensor {
            var s = try Q.matmul(K.transpose(-2, -1)) * scale
            if let mask { s = try s.maskedFill(mask.logicalNot(), -Double.infinity) }
            return try s.softmax(dim: -1).matmul(V)
        }
        let out = try F.scaledDotProductAttention(Q, K, V)
        #expect(out.shape == [2, 3, 4, 8])
        #expect(try out.maxAbsDiff(manual(1 / Double(8.0).squareRoot())) < 1e-5)
        let out2 = try F.scaledDotProductAttention(Q, K, V, scale: 0.3)
        #expect(try out2.maxAbsDiff(manual(0.3)) < 1e-5)
        #expect(try out2.maxAbsDiff(out) > 1e-3)  // the scale matters
        // Boolean mask (true = attend).
        let mask = try Tensor.randint(0, 2, [4, 5], generator: g).gt(0)
            .logicalOr(try Tensor([true, false, false, false, false]).expand([4, 5]))  // every row keeps ≥ 1
        let out3 = try F.scaledDotProductAttention(Q, K, V, mask: mask)
        #expect(try out3.maxAbsDiff(manual(1 / Double(8.0).squareRoot(), mask: mask)) < 1e-5)
        // Causal with L = S: position i only sees keys ≤ i, so the first query returns V[..., 0, :].
        let Kc = try K.narrow(2, start: 0, length: 4), Vc = try V.narrow(2, start: 0, length: 4)
        let causal = try F.scaledDotProductAttention(Q, Kc, Vc, isCausal: true)
        #expect(try causal.narrow(2, start: 0, length: 1).maxAbsDiff(Vc.narrow(2, start: 0, length: 1)) < 1e-6)
    }
}

// MARK: dtypes and creation

@Suite("Ops: dtypes and creation")
struct DTypeCreationTests {
    @Test func bfloat16AndFloat16RoundTrips() throws {
        // Exactly representable in both: survive f32 → half → f32 bit for bit.
        let exact: [Float] = [0, 1, -2, 0.5, 1.5, -0.75, 3, 256, 0.0078125, 1024, -0.0009765625]
        for half in [DType.bfloat16, .float16] {
            let t = try Tensor(exact).to(half)
            #expect(t.dtype == half)
            #expect(try t.to(.float32).toArray(Float.self) == exact, "\(half)")
        }
        // Others round to nearest: relative error ≤ 2^-(mantissa bits + 1), and really changed.
        let inexact: [Float] = [0.1, 1.0 / 3, 3.14159265, -1000.7, 12345.678, 0.0123]
        for (half, unit) in [(DType.bfloat16, Float(1) / 256), (DType.float16, Float(1) / 2048)] {
            let back = try Tensor(inexact).to(half).to(.float32).toArray(Float.self)
            for (x, y) in zip(inexact, back) {
                #expect(Swift.abs(x - y) <= Swift.abs(x) * unit, "\(half): \(x) → \(y)")
            }
            #expect(back[0] != inexact[0], "\(half) must round 0.1")
        }
        // bf16 keeps f32's range; f16 overflows above 65504.
        let big = try Tensor([Float(1e30), 1e5])
        let viaBF = try big.to(.bfloat16).to(.float32).toArray(Float.self)
        #expect(Swift.abs(viaBF[0] - 1e30) <= 1e30 / 256)
        let viaF16 = try big.to(.float16).to(.float32).toArray(Float.self)
        #expect(viaF16[1].isInfinite)
        // Known encodings: bf16 1.0 = 0x3F80, f16 1.0 = 0x3C00 (little-endian bytes).
        #expect(try Tensor([Float(1)]).to(.bfloat16).contiguousBytes() == [0x80, 0x3F])
        #expect(try Tensor([Float(1)]).to(.float16).contiguousBytes() == [0x00, 0x3C])
        // f64 → f32 → f64 and integer dtypes.
        #expect(try Tensor([0.1]).to(.float32).to(.float64).toArray(Double.self) == [Double(Float(0.1))])
        #expect(try Tensor([Int64(-3), 7]).to(.int32).toArray(Int32.self) == [-3, 7])
        #expect(try ft([2.7, -2.7]).to(.int64).toArray(Int64.self) == [2, -2])  // truncation
        #expect(try Tensor([UInt8(200), 3]).to(.float32).toArray(Float.self) == [200, 3])
    }

    @Test func creation() throws {
        let z = try Tensor.zeros([2, 3])
        #expect(z.shape == [2, 3] && z.dtype == .float32 && z.numel == 6 && z.device == .cpu)
        #expect(try z.toArray(Float.self) == Array(repeating: 0, count: 6))
        #expect(try Tensor.ones([4], dtype: .int32).toArray(Int32.self) == [1, 1, 1, 1])
        #expect(try Tensor.full([2], 7.5, dtype: .float64).toArray(Double.self) == [7.5, 7.5])
        #expect(try Tensor.scalar(3).shape == [])
        #expect(try Tensor.scalar(3).item() == 3)
        #expect(try Tensor.arange(5).toArray(Int64.self) == [0, 1, 2, 3, 4])
        #expect(try Tensor.arange(0, 1, step: 0.25, dtype: .float32).toArray(Float.self) == [0, 0.25, 0.5, 0.75])
        #expect(try Tensor.arange(5, 0, step: -2).toArray(Int64.self) == [5, 3, 1])
        #expect(try Tensor.linspace(0, 1, steps: 5).toArray(Float.self) == [0, 0.25, 0.5, 0.75, 1])
        #expect(try Tensor.linspace(-1, 1, steps: 3, dtype: .float64).toArray(Double.self) == [-1, 0, 1])
        #expect(try Tensor.empty([3, 0]).numel == 0)
        #expect(throws: TorchError.self) { try Tensor([Float(1), 2, 3], shape: [2, 2]) }
        let d = try Tensor([Float(1), 2], shape: [2]).description
        #expect(d.contains("[2]") && d.contains("float32") && d.contains("cpu"))
    }

    @Test func seededRandomIsReproducible() throws {
        func draw(_ seed: UInt64) throws -> ([Float], [Float], [Int64], [Int64]) {
            let g = try Generator(seed: seed)
            return (try Tensor.rand([64], generator: g).toArray(Float.self),
                    try Tensor.randn([64], generator: g).toArray(Float.self),
                    try Tensor.randint(0, 10, [64], generator: g).toArray(Int64.self),
                    try Tensor.randperm(10, generator: g).toArray(Int64.self))
        }
        let a = try draw(42), b = try draw(42), c = try draw(43)
        #expect(a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && a.3 == b.3)
        #expect(a.0 != c.0 && a.1 != c.1 && a.2 != c.2)
        #expect(a.0.allSatisfy { $0 >= 0 && $0 < 1 })
        #expect(a.2.allSatisfy { $0 >= 0 && $0 < 10 })
        #expect(a.3.sorted() == Array(0..<10))
        #expect(Set(a.2).count > 3)  // not constant
        // randn: 4096 draws have mean ≈ 0 and std ≈ 1.
        let n = try Tensor.randn([4096], dtype: .float64, generator: Generator(seed: 1))
        #expect(Swift.abs(try n.mean().item()) < 0.1)
        #expect(Swift.abs(try n.std().item() - 1) < 0.1)
        // Two draws from one generator differ; reseeding restarts the stream.
        let g = try Generator(seed: 5)
        let r1 = try Tensor.rand([8], generator: g).toArray(Float.self)
        let r2 = try Tensor.rand([8], generator: g).toArray(Float.self)
        #expect(r1 != r2)
        try g.manualSeed(5)
        #expect(try Tensor.rand([8], generator: g).toArray(Float.self) == r1)
        // State capture and restore.
        let st = try g.state()
        let r3 = try Tensor.randn([8], generator: g).toArray(Float.self)
        try g.setState(st)
        #expect(try Tensor.randn([8], generator: g).toArray(Float.self) == r3)
        // In-place fills with a generator.
        let u = try Tensor.empty([100])
        try u.uniform_(-2, -1, generator: Generator(seed: 9))
        #expect(try u.toArray(Float.self).allSatisfy { $0 >= -2 && $0 <= -1 })
    }
}
