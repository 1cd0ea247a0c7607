// Basic.swift — torch.nn.Dropout, Identity, Embedding and Sequential.
import Torch

/// The generator that random layers (Dropout) draw from on this task/thread, when one is set.
/// A trainer installs its own so that a run's randomness does not depend on anything else in the
/// process touching the global generator (other runs, model construction, tests in parallel).
/// With a data-parallel `shard`, layers draw at the global batch and keep this rank's rows
/// (BatchShard.swift), as the stage's own draws do.
public enum RandomContext {
    @TaskLocal public static var generator: Generator?
    @TaskLocal public static var shard: BatchShard = .whole

    /// Runs `body` with `generator` (and `shard`) as the source of layer randomness.
    public static func with<R>(_ generator: Generator, shard: BatchShard = .whole, _ body: () throws -> R) rethrows -> R {
        try $generator.withValue(generator) { try $shard.withValue(shard, operation: body) }
    }
}

public final class Dropout: Module, UnaryLayer {
    public let p: Double
    public init(_ p: Double = 0.5) { self.p = p }
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard training, p > 0 else { return x }
        guard let g = RandomContext.generator else { return try F.dropout(x, p: p, training: true) }
        // nn.Dropout: keep with probability 1 − p, scale kept values by 1 / (1 − p).
        let keep = try RandomContext.shard.rand(x.shape, dtype: x.dtype, generator: g, device: x.device).ge(p).to(x.dtype)
        return try x * keep / (1 - p)
    }
}

public final class Identity: Module, UnaryLayer {
    public override init() {}
    public func callAsFunction(_ x: Tensor) throws -> Tensor { x }
}

public final class Embedding: Module {
    public let weight: Tensor
    public init(_ count: Int, _ dim: Int) throws {
        weight = try makeParameter([count, dim], .normal(std: 1))
    }
    public func callAsFunction(_ indices: Tensor) throws -> Tensor { try F.embedding(indices, weight: weight) }
}

/// nn.Sequential: children keyed 0, 1, 2, … applied in order.
public final class Sequential: Module, UnaryLayer {
    public let layers: [any UnaryLayer]

    public init(_ layers: [any UnaryLayer]) { self.layers = layers }

    public override func listedChildren() -> [(String, Module)]? {
        layers.enumerated().map { ("\($0.offset)", $0.element) }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try layers.reduce(x) { try $1($0) }
    }
}
