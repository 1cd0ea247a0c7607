// Normalization.swift — torch.nn.GroupNorm, LayerNorm and BatchNorm2d.
import Torch

public final class GroupNorm: Module, UnaryLayer {
    public let weight: Tensor?
    public let bias: Tensor?
    public let numGroups: Int
    public let eps: Double

    public init(numGroups: Int, numChannels: Int, eps: Double = 1e-5, affine: Bool = true) throws {
        self.numGroups = numGroups
        self.eps = eps
        weight = affine ? try makeParameter([numChannels], .ones) : nil
        bias = affine ? try makeParameter([numChannels], .zeros) : nil
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try F.groupNorm(x, groups: numGroups, weight: weight, bias: bias, eps: eps)
    }
}

public final class LayerNorm: Module, UnaryLayer {
    public let weight: Tensor?
    public let bias: Tensor?
    public let normalizedShape: [Int]
    public let eps: Double

    public init(_ normalizedShape: [Int], eps: Double = 1e-5, elementwiseAffine: Bool = true, bias: Bool = true) throws {
        self.normalizedShape = normalizedShape
        self.eps = eps
        weight = elementwiseAffine ? try makeParameter(normalizedShape, .ones) : nil
        self.bias = elementwiseAffine && bias ? try makeParameter(normalizedShape, .zeros) : nil
    }

    public convenience init(_ dim: Int, eps: Double = 1e-5, elementwiseAffine: Bool = true) throws {
        try self.init([dim], eps: eps, elementwiseAffine: elementwiseAffine)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try F.layerNorm(x, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps)
    }
}

public final class BatchNorm2d: Module, UnaryLayer {
    public let weight: Tensor?
    public let bias: Tensor?
    @Buffer public var running_mean: Tensor
    @Buffer public var running_var: Tensor
    @Buffer public var num_batches_tracked: Tensor
    public let eps: Double
    public let momentum: Double

    public init(_ numFeatures: Int, eps: Double = 1e-5, momentum: Double = 0.1, affine: Bool = true) throws {
        self.eps = eps
        self.momentum = momentum
        weight = affine ? try makeParameter([numFeatures], .ones) : nil
        bias = affine ? try makeParameter([numFeatures], .zeros) : nil
        running_mean = try Tensor.zeros([numFeatures])
        running_var = try Tensor.ones([numFeatures])
        num_batches_tracked = try Tensor.zeros([], dtype: .int64)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        if training {
            try Torch.noGrad { try num_batches_tracked.copy_(num_batches_tracked + 1) }
        }
        return try F.batchNorm(x, runningMean: running_mean, runningVar: running_var, weight: weight, bias: bias,
                               training: training, momentum: momentum, eps: eps)
    }
}
