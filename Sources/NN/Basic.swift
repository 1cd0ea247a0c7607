// Basic.swift — torch.nn.Dropout, Identity, Embedding and Sequential.
import Torch

public final class Dropout: Module, UnaryLayer {
    public let p: Double
    public init(_ p: Double = 0.5) { self.p = p }
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try F.dropout(x, p: p, training: training) }
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
