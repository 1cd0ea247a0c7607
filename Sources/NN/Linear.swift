// Linear.swift — torch.nn.Linear (weight [out, in], optional bias [out]).
import Torch

public final class Linear: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) throws {
        let bound = fanInBound(inFeatures)
        weight = try makeParameter([outFeatures, inFeatures], .uniform(bound))
        self.bias = bias ? try makeParameter([outFeatures], .uniform(bound)) : nil
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try F.linear(x, weight: weight, bias: bias) }
}
