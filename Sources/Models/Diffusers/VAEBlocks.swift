// VAEBlocks.swift — mirrors the AutoencoderKL building blocks of diffusers 0.27:
// diffusers.models.autoencoders.vae.Encoder / Decoder (here VAEEncoder / VAEDecoder) and
// diffusers.models.unets.unet_2d_blocks.DownEncoderBlock2D, UpDecoderBlock2D and UNetMidBlock2D
// (temb_channels None, resnet_time_scale_shift "default"), with the VAE's own resamplers
// (`downsamplers.0.conv`, `upsamplers.0.conv`).
import NN
import Torch

/// Records named intermediate outputs (forward-hook style) while a VAE runs; names are module
/// paths relative to the AutoencoderKL (`encoder.down_blocks.0`, `quant_conv`, …).
public typealias VAETrace = (_ module: String, _ output: Tensor) -> Void

/// Downsample2D(use_conv=True, padding=0): F.pad right/bottom by one, then Conv2d 3×3 stride 2.
final class VAEDownsample: Module {
    let conv: Conv2d

    init(channels: Int) throws {
        conv = try Conv2d(channels, channels, kernelSize: 3, stride: 2, padding: 0)
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor { try conv(x.pad([0, 1, 0, 1])) }
}

/// Upsample2D(use_conv=True): nearest ×2 (bf16 upcast to fp32 as diffusers does), then Conv2d 3×3.
final class VAEUpsample: Module {
    let conv: Conv2d

    init(channels: Int) throws {
        conv = try Conv2d(channels, channels, kernelSize: 3, padding: 1)
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let dtype = x.dtype
        var h = dtype == .bfloat16 ? try x.to(.float32) : x
        h = try F.interpolate(h, scaleFactor: (2, 2), mode: .nearest)
        if dtype == .bfloat16 { h = try h.to(dtype) }
        return try conv(h)
    }
}

/// The ResnetBlock2D every VAE block uses: no time embedding, eps 1e-6.
func vaeResnet(_ inC: Int, _ outC: Int, groups: Int, eps: Double, act: String, dropout: Double = 0) throws -> ResnetBlock2D {
    try ResnetBlock2D(.init(in_channels: inC, out_channels: outC, temb_channels: nil, groups: groups, eps: eps,
                            dropout: dropout, non_linearity: act))
}

public final class DownEncoderBlock2D: Module {
    public let resnets: [ResnetBlock2D]
    let downsamplers: [VAEDownsample]

    public init(inChannels: Int, outChannels: Int, numLayers: Int, groups: Int, eps: Double = 1e-6,
                act: String = "silu", addDownsample: Bool) throws {
        resnets = try (0..<numLayers).map {
            try vaeResnet($0 == 0 ? inChannels : outChannels, outChannels, groups: groups, eps: eps, act: act)
        }
        downsamplers = addDownsample ? [try VAEDownsample(channels: outChannels)] : []
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = x
        for r in resnets { h = try r(h, temb: nil) }
        for d in downsamplers { h = try d(h) }
        return h
    }
}

public final class UpDecoderBlock2D: Module {
    public let resnets: [ResnetBlock2D]
    let upsamplers: [VAEUpsample]

    public init(inChannels: Int, outChannels: Int, numLayers: Int, groups: Int, eps: Double = 1e-6,
                act: String = "silu", addUpsample: Bool) throws {
        resnets = try (0..<numLayers).map {
            try vaeResnet($0 == 0 ? inChannels : outChannels, outChannels, groups: groups, eps: eps, act: act)
        }
        upsamplers = addUpsample ? [try VAEUpsample(channels: outChannels)] : []
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = x
        for r in resnets { h = try r(h, temb: nil) }
        for u in upsamplers { h = try u(h) }
        return h
    }
}

/// resnet → (attention → resnet) × numLayers. The attention is diffusers' `_from_deprecated_attn_block`
/// form: GroupNorm first, heads = C / attention_head_dim, q/k/v with bias, residual connection.
public final class UNetMidBlock2D: Module {
    public let attentions: [Attention]
    public let resnets: [ResnetBlock2D]

    public init(channels: Int, groups: Int, eps: Double = 1e-6, act: String = "silu", attentionHeadDim: Int? = nil,
                addAttention: Bool = true, numLayers: Int = 1, outputScaleFactor: Double = 1) throws {
        let headDim = attentionHeadDim ?? channels
        guard channels % headDim == 0 else {
            throw TorchError("UNetMidBlock2D: \(channels) channels are not a multiple of attention_head_dim \(headDim)")
        }
        var rs = [try vaeResnet(channels, channels, groups: groups, eps: eps, act: act)]
        var attns: [Attention] = []
        for _ in 0..<numLayers {
            if addAttention {
                attns.append(try Attention(queryDim: channels, heads: channels / headDim, dimHead: headDim, bias: true,
                                           normNumGroups: groups, eps: eps, residualConnection: true,
                                           rescaleOutputFactor: outputScaleFactor))
            }
            rs.append(try vaeResnet(channels, channels, groups: groups, eps: eps, act: act))
        }
        attentions = attns
        resnets = rs
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = try resnets[0](x, temb: nil)
        for (i, r) in resnets.dropFirst().enumerated() {
            if i < attentions.count { h = try attentions[i](h) }
            h = try r(h, temb: nil)
        }
        return h
    }
}

/// diffusers `Encoder`: conv_in → down blocks → mid block → GroupNorm → SiLU → conv_out
/// (2·latent_channels with double_z).
public final class VAEEncoder: Module {
    public let conv_in: Conv2d
    public let down_blocks: [DownEncoderBlock2D]
    public let mid_block: UNetMidBlock2D
    public let conv_norm_out: GroupNorm
    public let conv_out: Conv2d

    public init(inChannels: Int, outChannels: Int, blockOutChannels: [Int], layersPerBlock: Int, groups: Int,
                act: String, doubleZ: Bool = true, midBlockAddAttention: Bool = true) throws {
        guard let first = blockOutChannels.first, let last = blockOutChannels.last else {
            throw TorchError("VAE Encoder: block_out_channels is empty")
        }
        conv_in = try Conv2d(inChannels, first, kernelSize: 3, padding: 1)
        var blocks: [DownEncoderBlock2D] = []
        var out = first
        for (i, ch) in blockOutChannels.enumerated() {
            let input = out
            out = ch
            blocks.append(try DownEncoderBlock2D(inChannels: input, outChannels: out, numLayers: layersPerBlock,
                                                 groups: groups, act: act,
                                                 addDownsample: i != blockOutChannels.count - 1))
        }
        down_blocks = blocks
        mid_block = try UNetMidBlock2D(channels: last, groups: groups, act: act, addAttention: midBlockAddAttention)
        conv_norm_out = try GroupNorm(numGroups: groups, numChannels: last, eps: 1e-6)
        conv_out = try Conv2d(last, doubleZ ? 2 * outChannels : outChannels, kernelSize: 3, padding: 1)
    }

    public func callAsFunction(_ x: Tensor, trace: VAETrace? = nil, prefix: String = "encoder") throws -> Tensor {
        var h = try conv_in(x)
        trace?("\(prefix).conv_in", h)
        for (i, b) in down_blocks.enumerated() {
            h = try b(h)
            trace?("\(prefix).down_blocks.\(i)", h)
        }
        h = try mid_block(h)
        trace?("\(prefix).mid_block", h)
        h = try conv_out(conv_norm_out(h).silu())
        trace?("\(prefix).conv_out", h)
        return h
    }
}

/// diffusers `Decoder` (norm_type "group"): conv_in → mid block → up blocks (layers_per_block + 1
/// resnets each) → GroupNorm → SiLU → conv_out.
public final class VAEDecoder: Module {
    public let conv_in: Conv2d
    public let up_blocks: [UpDecoderBlock2D]
    public let mid_block: UNetMidBlock2D
    public let conv_norm_out: GroupNorm
    public let conv_out: Conv2d

    public init(inChannels: Int, outChannels: Int, blockOutChannels: [Int], layersPerBlock: Int, groups: Int,
                act: String, midBlockAddAttention: Bool = true) throws {
        guard let first = blockOutChannels.first, let last = blockOutChannels.last else {
            throw TorchError("VAE Decoder: block_out_channels is empty")
        }
        conv_in = try Conv2d(inChannels, last, kernelSize: 3, padding: 1)
        mid_block = try UNetMidBlock2D(channels: last, groups: groups, act: act, addAttention: midBlockAddAttention)
        let reversed = Array(blockOutChannels.reversed())
        var blocks: [UpDecoderBlock2D] = []
        var out = reversed[0]
        for (i, ch) in reversed.enumerated() {
            let prev = out
            out = ch
            blocks.append(try UpDecoderBlock2D(inChannels: prev, outChannels: out, numLayers: layersPerBlock + 1,
                                               groups: groups, act: act, addUpsample: i != reversed.count - 1))
        }
        up_blocks = blocks
        conv_norm_out = try GroupNorm(numGroups: groups, numChannels: first, eps: 1e-6)
        conv_out = try Conv2d(first, outChannels, kernelSize: 3, padding: 1)
    }

    public func callAsFunction(_ z: Tensor, trace: VAETrace? = nil, prefix: String = "decoder") throws -> Tensor {
        var h = try conv_in(z)
        trace?("\(prefix).conv_in", h)
        h = try mid_block(h)
        trace?("\(prefix).mid_block", h)
        // diffusers casts to the up blocks' parameter dtype here (matters when only they are upcast).
        if let dt = up_blocks.first?.resnets.first?.conv1.weight.dtype, dt != h.dtype { h = try h.to(dt) }
        for (i, b) in up_blocks.enumerated() {
            h = try b(h)
            trace?("\(prefix).up_blocks.\(i)", h)
        }
        h = try conv_out(conv_norm_out(h).silu())
        trace?("\(prefix).conv_out", h)
        return h
    }
}
