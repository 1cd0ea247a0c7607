// Tensor.swift — the Swift tensor: a final class owning one LibTorch tensor handle (torch.Tensor).
// Every operation throws a TorchError carrying LibTorch's own message; nothing leaks a handle.
import CTorch

/// An error raised inside LibTorch (or by a precondition of this wrapper), with its message.
public struct TorchError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

@inline(__always)
func check(_ rc: Int32) throws {
    if rc != 0 { throw TorchError(String(cString: tc_last_error())) }
}

/// Runs a C function that hands out one tensor handle, and takes ownership of it.
@inline(__always)
func make(_ body: (UnsafeMutablePointer<OpaquePointer?>) -> Int32) throws -> Tensor {
    var out: OpaquePointer?
    try check(body(&out))
    guard let handle = out else { throw TorchError("LibTorch returned no tensor") }
    return Tensor(owning: handle)
}

@inline(__always)
func i64(_ xs: [Int]) -> [Int64] { xs.map(Int64.init) }

public enum Device: Equatable, Hashable, Sendable, CustomStringConvertible {
    case cpu
    case cuda(Int)

    var code: (Int32, Int32) {
        switch self {
        case .cpu: return (Int32(TC_DEVICE_CPU), 0)
        case .cuda(let i): return (Int32(TC_DEVICE_CUDA), Int32(i))
        }
    }

    /// Parses "cpu", "cuda" or "cuda:N".
    public init(parsing s: String) throws {
        if s == "cpu" { self = .cpu; return }
        if s == "cuda" { self = .cuda(0); return }
        if s.hasPrefix("cuda:"), let i = Int(s.dropFirst(5)), i >= 0 { self = .cuda(i); return }
        throw TorchError("unknown device '\(s)': expected cpu, cuda or cuda:N")
    }

    public var description: String {
        switch self {
        case .cpu: return "cpu"
        case .cuda(let i): return "cuda:\(i)"
        }
    }
}

/// Swift scalar types that map onto a tensor dtype.
public protocol TensorScalar: Sendable {
    static var dtype: DType { get }
}
extension Float: TensorScalar { public static var dtype: DType { .float32 } }
extension Double: TensorScalar { public static var dtype: DType { .float64 } }
extension Int64: TensorScalar { public static var dtype: DType { .int64 } }
extension Int32: TensorScalar { public static var dtype: DType { .int32 } }
extension Int16: TensorScalar { public static var dtype: DType { .int16 } }
extension Int8: TensorScalar { public static var dtype: DType { .int8 } }
extension UInt8: TensorScalar { public static var dtype: DType { .uint8 } }
extension Bool: TensorScalar { public static var dtype: DType { .bool } }

public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    let handle: OpaquePointer

    init(owning handle: OpaquePointer) { self.handle = handle }
    deinit { tc_free(handle) }

    // MARK: metadata

    public var dim: Int {
        var d: Int64 = 0
        _ = tc_dim(handle, &d)
        return Int(d)
    }

    public var shape: [Int] {
        var s = [Int64](repeating: 0, count: Swift.max(dim, 1))
        _ = tc_sizes(handle, &s, Int64(s.count))
        return s.prefix(dim).map(Int.init)
    }

    public var strides: [Int] {
        var s = [Int64](repeating: 0, count: Swift.max(dim, 1))
        _ = tc_strides(handle, &s, Int64(s.count))
        return s.prefix(dim).map(Int.init)
    }

    public var numel: Int {
        var n: Int64 = 0
        _ = tc_numel(handle, &n)
        return Int(n)
    }

    public var dtype: DType {
        var d: Int32 = 0
        _ = tc_dtype(handle, &d)
        return DType(rawValue: d) ?? .float32
    }

    public var device: Device {
        var t: Int32 = 0, i: Int32 = 0
        _ = tc_device(handle, &t, &i)
        return t == Int32(TC_DEVICE_CUDA) ? .cuda(Int(i)) : .cpu
    }

    public var isContiguous: Bool {
        var c: Int32 = 0
        _ = tc_is_contiguous(handle, &c)
        return c != 0
    }

    /// `Tensor(shape: [2, 3], dtype: float32, device: cpu)`.
    public var description: String {
        "Tensor(shape: \(shape), dtype: \(dtype), device: \(device)\(requiresGrad ? ", requires_grad" : ""))"
    }

    /// LibTorch's own printout of the values.
    public func valuesDescription(maxLength: Int = 65536) -> String {
        var buf = [CChar](repeating: 0, count: maxLength)
        guard tc_to_string(handle, &buf, maxLength) == 0 else { return description }
        return String(cString: buf)
    }

    /// A second handle onto the same tensor (same storage, same autograd identity).
    public func alias() throws -> Tensor { try make { tc_shallow_clone(handle, $0) } }

    // MARK: creation

    public static func empty(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        let s = i64(shape), (dt, di) = device.code
        return try make { tc_empty(s, Int32(s.count), dtype.rawValue, dt, di, $0) }
    }

    public static func zeros(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        let s = i64(shape), (dt, di) = device.code
        return try make { tc_zeros(s, Int32(s.count), dtype.rawValue, dt, di, $0) }
    }

    public static func ones(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        let s = i64(shape), (dt, di) = device.code
        return try make { tc_ones(s, Int32(s.count), dtype.rawValue, dt, di, $0) }
    }

    public static func full(_ shape: [Int], _ value: Double, dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        let s = i64(shape), (dt, di) = device.code
        return try make { tc_full(s, Int32(s.count), value, dtype.rawValue, dt, di, $0) }
    }

    /// A 0-dim tensor.
    public static func scalar(_ value: Double, dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try full([], value, dtype: dtype, device: device)
    }

    public static func arange(_ start: Double, _ end: Double, step: Double = 1, dtype: DType = .int64, device: Device = .cpu) throws -> Tensor {
        let (dt, di) = device.code
        return try make { tc_arange(start, end, step, dtype.rawValue, dt, di, $0) }
    }

    public static func arange(_ end: Int, dtype: DType = .int64, device: Device = .cpu) throws -> Tensor {
        try arange(0, Double(end), dtype: dtype, device: device)
    }

    public static func linspace(_ start: Double, _ end: Double, steps: Int, dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        let (dt, di) = device.code
        return try make { tc_linspace(start, end, Int64(steps), dtype.rawValue, dt, di, $0) }
    }

    /// With a generator on another device than `device` (a CPU generator for CUDA tensors), the
    /// numbers are drawn where the generator is and copied, so they are the same on every device.
    public static func rand(_ shape: [Int], dtype: DType = .float32, generator: Generator? = nil, device: Device = .cpu) throws -> Tensor {
        if let g = generator, g.device != device { return try rand(shape, dtype: dtype, generator: g, device: g.device).to(device) }
        let s = i64(shape), (dt, di) = device.code
        return try make { tc_rand(s, Int32(s.count), dtype.rawValue, generator?.handle, dt, di, $0) }
    }

    public static func randn(_ shape: [Int], dtype: DType = .float32, generator: Generator? = nil, device: Device = .cpu) throws -> Tensor {
        if let g = generator, g.device != device { return try randn(shape, dtype: dtype, generator: g, device: g.device).to(device) }
        let s = i64(shape), (dt, di) = device.code
        return try make { tc_randn(s, Int32(s.count), dtype.rawValue, generator?.handle, dt, di, $0) }
    }

    public static func randint(_ low: Int, _ high: Int, _ shape: [Int], dtype: DType = .int64, generator: Generator? = nil, device: Device = .cpu) throws -> Tensor {
        if let g = generator, g.device != device {
            return try randint(low, high, shape, dtype: dtype, generator: g, device: g.device).to(device)
        }
        let s = i64(shape), (dt, di) = device.code
        return try make { tc_randint(Int64(low), Int64(high), s, Int32(s.count), dtype.rawValue, generator?.handle, dt, di, $0) }
    }

    public static func randperm(_ n: Int, generator: Generator? = nil) throws -> Tensor {
        try make { tc_randperm(Int64(n), generator?.handle, $0) }
    }

    /// Copies raw bytes (numel × dtype size) into a new CPU tensor.
    public static func fromBytes(_ raw: UnsafeRawBufferPointer, shape: [Int], dtype: DType) throws -> Tensor {
        let s = i64(shape)
        return try make { tc_from_data(raw.baseAddress, raw.count, s, Int32(s.count), dtype.rawValue, $0) }
    }

    /// A CPU tensor holding `values` in the given shape (defaults to 1-D).
    public convenience init<T: TensorScalar>(_ values: [T], shape: [Int]? = nil) throws {
        let s = shape ?? [values.count]
        guard s.reduce(1, *) == values.count else {
            throw TorchError("Tensor: \(values.count) values do not fill shape \(s)")
        }
        let s64 = i64(s)
        var out: OpaquePointer?
        try values.withUnsafeBytes { raw in
            try check(tc_from_data(raw.baseAddress, raw.count, s64, Int32(s64.count), T.dtype.rawValue, &out))
        }
        guard let handle = out else { throw TorchError("LibTorch returned no tensor") }
        self.init(owning: handle)
    }

    // MARK: data access

    /// All values as a flat array in row-major order, converted to `T`'s dtype.
    public func toArray<T: TensorScalar>(_: T.Type = T.self) throws -> [T] {
        let src = dtype == T.dtype ? self : try to(T.dtype)
        let n = src.numel
        return try [T](unsafeUninitializedCapacity: n) { buf, count in
            try check(tc_copy_to_buffer(src.handle, buf.baseAddress, n * MemoryLayout<T>.stride))
            count = n
        }
    }

    /// The raw bytes of a contiguous CPU copy.
    public func contiguousBytes() throws -> [UInt8] {
        let n = numel * dtype.byteSize
        return try [UInt8](unsafeUninitializedCapacity: n) { buf, count in
            try check(tc_copy_to_buffer(handle, buf.baseAddress, n))
            count = n
        }
    }

    /// Pointer to the storage of a contiguous CPU tensor; valid while the tensor lives.
    public func mutableDataPointer() throws -> UnsafeMutableRawPointer {
        var p: UnsafeMutableRawPointer?
        try check(tc_data_ptr(handle, &p))
        guard let ptr = p else { throw TorchError("tensor has no storage") }
        return ptr
    }

    public func item() throws -> Double {
        var v = 0.0
        try check(tc_item_double(handle, &v))
        return v
    }

    public func itemInt() throws -> Int {
        var v: Int64 = 0
        try check(tc_item_int64(handle, &v))
        return Int(v)
    }

    // MARK: in place

    /// Copies `src` into this tensor (converting dtype and device; shapes must broadcast).
    public func copy_(_ src: Tensor) throws { try check(tc_copy_(handle, src.handle)) }
    public func fill_(_ value: Double) throws { try check(tc_fill_(handle, value)) }
    public func zero_() throws { try check(tc_zero_(handle)) }
    public func uniform_(_ from: Double, _ to: Double, generator: Generator? = nil) throws {
        try check(tc_uniform_(handle, from, to, generator?.handle))
    }
    public func normal_(mean: Double = 0, std: Double = 1, generator: Generator? = nil) throws {
        try check(tc_normal_(handle, mean, std, generator?.handle))
    }
    /// self += alpha * other
    public func addScaled_(_ other: Tensor, alpha: Double) throws { try check(tc_add_scaled_(handle, other.handle, alpha)) }
    public func mul_(_ s: Double) throws { try check(tc_mul_scalar_(handle, s)) }
    /// self = weight · self + (1 − weight) · other (an EMA update with decay `weight`).
    public func emaUpdate_(_ other: Tensor, decay weight: Double) throws { try check(tc_lerp_(handle, other.handle, weight)) }

    // MARK: conversion

    public func to(_ dtype: DType) throws -> Tensor {
        try make { tc_to(handle, dtype.rawValue, -1, 0, 0, $0) }
    }
    public func to(_ device: Device) throws -> Tensor {
        let (dt, di) = device.code
        return try make { tc_to(handle, -1, dt, di, 0, $0) }
    }
    public func to(_ device: Device, _ dtype: DType) throws -> Tensor {
        let (dt, di) = device.code
        return try make { tc_to(handle, dtype.rawValue, dt, di, 0, $0) }
    }
    public func clone() throws -> Tensor { try make { tc_clone(handle, $0) } }
    public func detach() throws -> Tensor { try make { tc_detach(handle, $0) } }
    public func contiguous() throws -> Tensor { try make { tc_contiguous(handle, $0) } }
}

extension Tensor {
    /// Replaces the data (storage, dtype, device) while keeping this tensor's identity, as
    /// `param.data = new` does in PyTorch; optimizers holding the tensor see the new data.
    public func setData(_ src: Tensor) throws { try check(tc_set_data(handle, src.handle)) }
}
