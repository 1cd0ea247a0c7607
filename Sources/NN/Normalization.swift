// Normalization.swift — torch.nn.GroupNorm, LayerNorm and BatchNorm2d (with torch.nn.SyncBatchNorm's
// cross-process statistics when a process group is attached).
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

    /// torch.nn.SyncBatchNorm.convert_sync_batchnorm: when set, training-mode statistics are those
    /// of the whole batch over every rank of the group (differentiably), so W processes at batch b
    /// normalise as one process at batch W·b. Evaluation mode uses the running statistics as before.
    public var processGroup: ProcessGroup?

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        if training {
            try Torch.noGrad { try num_batches_tracked.copy_(num_batches_tracked + 1) }
            if let pg = processGroup { return try synchronised(x, pg) }
        }
        return try F.batchNorm(x, runningMean: running_mean, runningVar: running_var, weight: weight, bias: bias,
                               training: training, momentum: momentum, eps: eps)
    }

    /// SyncBatchNorm's training forward (torch/nn/modules/_functions.py), in two passes as
    /// F.batchNorm computes one batch's statistics: the per-channel sum of x and the element count
    /// summed over the ranks give the mean, then the sum of (x − mean)² gives the variance (no
    /// E[x²] − mean² cancellation). The biased variance normalises, the unbiased one updates
    /// `running_var`.
    func synchronised(_ x: Tensor, _ pg: ProcessGroup) throws -> Tensor {
        let c = x.shape[1], dims = [0] + Array(2..<x.dim)
        let shape = [1, c] + [Int](repeating: 1, count: x.dim - 2)
        let count = try Tensor.full([1], Double(x.shape.reduce(1, *) / c), dtype: x.dtype, device: x.device)
        let sums = try pg.allReduceSum(differentiable: Tensor.cat([x.sum(dims), count]))
        let n: Double = try sums.narrow(0, start: c, length: 1).item()
        let mean = try sums.narrow(0, start: 0, length: c) / n
        let centred = try x - mean.view(shape)
        let variance = try pg.allReduceSum(differentiable: centred.square().sum(dims)) / n
        var y = try centred * (variance + eps).rsqrt().view(shape)
        if let weight { y = try y * weight.view(shape) }
        if let bias { y = try y + bias.view(shape) }
        try Torch.noGrad {
            try running_mean.copy_(running_mean * (1 - momentum) + mean.detach().to(running_mean.dtype) * momentum)
            let unbiased = try variance.detach().to(running_var.dtype) * (n / max(n - 1, 1))
            try running_var.copy_(running_var * (1 - momentum) + unbiased * momentum)
        }
        return y
    }
}
