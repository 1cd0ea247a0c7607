// BatchShard.swift — batch-shaped random draws for one data-parallel rank. No PyTorch counterpart:
// torch's DDP gives each rank its own draws, so W ranks at batch b never see the numbers of one
// process at batch W·b. Here every rank holds the same generator state, draws each batch-shaped
// tensor at the global batch (dim 0 × count) and keeps its own rows, so they do; one process
// (`whole`) draws exactly what it drew before.

public struct BatchShard: Sendable, Equatable, CustomStringConvertible {
    /// This rank's position among `count` equal shares of the global batch (rows rank·b ..< (rank+1)·b).
    public let rank: Int
    public let count: Int

    public static let whole = BatchShard(rank: 0, count: 1)

    public init(rank: Int, count: Int) {
        precondition(count >= 1 && (0..<count).contains(rank), "BatchShard: rank \(rank) is not in 0..<\(count)")
        self.rank = rank
        self.count = count
    }

    public var description: String { "rank \(rank) of \(count)" }

    /// `make` called at the global shape (dim 0 × count), narrowed to this rank's rows of `shape[0]`.
    public func draw(_ shape: [Int], _ make: ([Int]) throws -> Tensor) throws -> Tensor {
        guard count > 1, let b = shape.first else { return try make(shape) }
        return try make([b * count] + shape.dropFirst()).narrow(0, start: rank * b, length: b)
    }

    public func randn(_ shape: [Int], dtype: DType = .float32, generator: Generator?, device: Device = .cpu) throws -> Tensor {
        try draw(shape) { try Tensor.randn($0, dtype: dtype, generator: generator, device: device) }
    }

    public func rand(_ shape: [Int], dtype: DType = .float32, generator: Generator?, device: Device = .cpu) throws -> Tensor {
        try draw(shape) { try Tensor.rand($0, dtype: dtype, generator: generator, device: device) }
    }

    public func randint(_ low: Int, _ high: Int, _ shape: [Int], generator: Generator?, device: Device = .cpu) throws -> Tensor {
        try draw(shape) { try Tensor.randint(low, high, $0, generator: generator, device: device) }
    }
}
