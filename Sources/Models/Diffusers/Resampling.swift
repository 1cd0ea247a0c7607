// Resampling.swift — mirrors diffusers.models.downsampling.Downsample2D and
// diffusers.models.upsampling.Upsample2D (diffusers 0.27, resnet.py there) with norm_type None:
// the weights live under `conv` (diffusers stores its "op"-named conv as `conv` too).
import NN
import Torch

/// Halves H and W: Conv2d k×k stride 2 (`use_conv`) or 2×2 average pooling.
public final class Downsample2D: Module, UnaryLayer {
    /// The strided convolution; nil for the average-pool variant (which has no weights).
    public let conv: Conv2d?
    public let channels: Int
    public let outChannels: Int
    public let padding: Int

    public init(channels: Int, useConv: Bool = false, outChannels: Int? = nil, padding: Int = 1,
                kernelSize: Int = 3, bias: Bool = true) throws {
        let out = outChannels ?? channels
        self.channels = channels
        self.outChannels = out
        self.padding = padding
        if useConv {
            conv = try Conv2d(channels, out, kernelSize: kernelSize, stride: 2, padding: padding, bias: bias)
        } else {
            guard out == channels else {
                throw TorchError("Downsample2D: average pooling cannot change channels (\(channels) → \(out))")
            }
            conv = nil
        }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.dim == 4, x.shape[1] == channels else {
            throw TorchError("Downsample2D: expected (B, \(channels), H, W), got \(x.shape)")
        }
        guard let conv else { return try F.avgPool2d(x, kernel: (2, 2), stride: (2, 2)) }
        // padding 0 (the VAE encoder) pads right and bottom only, so odd sizes round like TF "SAME".
        let h = padding == 0 ? try x.pad([0, 1, 0, 1]) : x
        return try conv(h)
    }
}

/// Doubles H and W (or resizes to a given size): nearest interpolation then Conv2d 3×3
/// (`use_conv`), or a ConvTranspose2d 4×4 stride 2 (`use_conv_transpose`).
public final class Upsample2D: Module {
    /// Conv2d (use_conv), ConvTranspose2d (use_conv_transpose) or nil (interpolation only).
    public let conv: Module?
    public let channels: Int
    public let outChannels: Int
    public let useConvTranspose: Bool
    public let interpolate: Bool

    public init(channels: Int, useConv: Bool = false, useConvTranspose: Bool = false, outChannels: Int? = nil,
                kernelSize: Int? = nil, padding: Int = 1, bias: Bool = true, interpolate: Bool = true) throws {
        let out = outChannels ?? channels
        self.channels = channels
        self.outChannels = out
        self.useConvTranspose = useConvTranspose
        self.interpolate = interpolate
        if useConvTranspose {
            conv = try ConvTranspose2d(channels, out, kernelSize: kernelSize ?? 4, stride: 2, padding: padding, bias: bias)
        } else if useConv {
            conv = try Conv2d(channels, out, kernelSize: kernelSize ?? 3, padding: padding, bias: bias)
        } else {
            guard out == channels else {
                throw TorchError("Upsample2D: interpolation alone cannot change channels (\(channels) → \(out))")
            }
            conv = nil
        }
    }

    /// `outputSize` (H, W) replaces the ×2 factor; the UNet passes it when the input size is not
    /// a multiple of 2^(number of upsamplers), so skips and upsampled features line up.
    public func callAsFunction(_ x: Tensor, outputSize: (Int, Int)? = nil) throws -> Tensor {
        guard x.dim == 4, x.shape[1] == channels else {
            throw TorchError("Upsample2D: expected (B, \(channels), H, W), got \(x.shape)")
        }
        let layer = conv as? any UnaryLayer
        if useConvTranspose, let layer { return try layer(x) }
        var h = x
        if interpolate {
            // upsample_nearest2d has no bfloat16 kernel in the reference's torch, which upcasts; same here.
            let dtype = h.dtype
            if dtype == .bfloat16 { h = try h.to(.float32) }
            if let outputSize {
                h = try F.interpolate(h, size: outputSize, mode: .nearest)
            } else {
                h = try F.interpolate(h, scaleFactor: (2, 2), mode: .nearest)
            }
            if dtype == .bfloat16 { h = try h.to(dtype) }
        }
        return try layer.map { try $0(h) } ?? h
    }
}
