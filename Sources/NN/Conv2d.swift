// Conv2d.swift — torch.nn.Conv2d and torch.nn.ConvTranspose2d (zero padding).
import Torch

public final class Conv2d: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: (Int, Int)
    public let padding: (Int, Int)
    public let dilation: (Int, Int)
    public let groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true) throws {
        let bound = fanInBound(inChannels / groups * kernelSize.0 * kernelSize.1)
        weight = try makeParameter([outChannels, inChannels / groups, kernelSize.0, kernelSize.1], .uniform(bound))
        self.bias = bias ? try makeParameter([outChannels], .uniform(bound)) : nil
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
    }

    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            groups: Int = 1, bias: Bool = true) throws {
        try self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                      padding: (padding, padding), groups: groups, bias: bias)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try F.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}

public final class ConvTranspose2d: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: (Int, Int)
    public let padding: (Int, Int)
    public let outputPadding: (Int, Int)

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                outputPadding: Int = 0, bias: Bool = true) throws {
        // PyTorch computes fan_in from weight.size(1) * k * k, i.e. out_channels for transposed convs.
        let bound = fanInBound(outChannels * kernelSize * kernelSize)
        weight = try makeParameter([inChannels, outChannels, kernelSize, kernelSize], .uniform(bound))
        self.bias = bias ? try makeParameter([outChannels], .uniform(bound)) : nil
        self.stride = (stride, stride)
        self.padding = (padding, padding)
        self.outputPadding = (outputPadding, outputPadding)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try F.convTranspose2d(x, weight: weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding)
    }
}
