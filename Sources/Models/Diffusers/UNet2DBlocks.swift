// UNet2DBlocks.swift — mirrors diffusers.models.unets.unet_2d_blocks (diffusers 0.27): DownBlock2D,
// CrossAttnDownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D and CrossAttnUpBlock2D, with their
// PyTorch children `attentions`, `resnets`, `downsamplers.0.conv`, `upsamplers.0.conv`.
import NN
import Torch

/// What get_down_block / get_mid_block / get_up_block hand every block of one UNet; the UNet
/// sets the per-block values (heads, cross_attention_dim, transformer layers) on a copy.
public struct UNetBlockSettings: Sendable {
    public var tembChannels: Int?
    public var resnetEps: Double
    public var resnetGroups: Int
    public var resnetActFn: String
    public var resnetTimeScaleShift: String
    public var dropout: Double
    public var numAttentionHeads: Int
    public var crossAttentionDim: Int?
    /// BasicTransformerBlocks inside each Transformer2DModel.
    public var transformerLayers: Int
    public var useLinearProjection: Bool
    public var onlyCrossAttention: Bool
    public var upcastAttention: Bool

    public init(tembChannels: Int?, resnetEps: Double = 1e-5, resnetGroups: Int = 32, resnetActFn: String = "silu",
                resnetTimeScaleShift: String = "default", dropout: Double = 0, numAttentionHeads: Int = 8,
                crossAttentionDim: Int? = nil, transformerLayers: Int = 1, useLinearProjection: Bool = false,
                onlyCrossAttention: Bool = false, upcastAttention: Bool = false) {
        self.tembChannels = tembChannels
        self.resnetEps = resnetEps
        self.resnetGroups = resnetGroups
        self.resnetActFn = resnetActFn
        self.resnetTimeScaleShift = resnetTimeScaleShift
        self.dropout = dropout
        self.numAttentionHeads = numAttentionHeads
        self.crossAttentionDim = crossAttentionDim
        self.transformerLayers = transformerLayers
        self.useLinearProjection = useLinearProjection
        self.onlyCrossAttention = onlyCrossAttention
        self.upcastAttention = upcastAttention
    }

    func resnet(_ inC: Int, _ outC: Int, outputScaleFactor: Double = 1) throws -> ResnetBlock2D {
        try ResnetBlock2D(.init(in_channels: inC, out_channels: outC, temb_channels: tembChannels, groups: resnetGroups,
                                eps: resnetEps, dropout: dropout, output_scale_factor: outputScaleFactor,
                                time_embedding_norm: resnetTimeScaleShift, non_linearity: resnetActFn))
    }

    /// diffusers builds these with heads = num_attention_heads and head_dim = channels // heads.
    func transformer(_ channels: Int) throws -> Transformer2DModel {
        guard numAttentionHeads > 0 else { throw TorchError("UNet block: num_attention_heads must be positive") }
        var c = Transformer2DModel.Config(num_attention_heads: numAttentionHeads,
                                          attention_head_dim: channels / numAttentionHeads, in_channels: channels,
                                          num_layers: transformerLayers, norm_num_groups: resnetGroups,
                                          cross_attention_dim: crossAttentionDim,
                                          use_linear_projection: useLinearProjection)
        c.only_cross_attention = onlyCrossAttention
        c.upcast_attention = upcastAttention
        return try Transformer2DModel(c)
    }
}

/// A UNet encoder stage: returns the stage output and the skip tensors it contributes.
public protocol UNetDownBlock: Module {
    var resnets: [ResnetBlock2D] { get }
    /// One Transformer2DModel per resnet, or none.
    var attentions: [Transformer2DModel] { get }
    var downsamplers: [Downsample2D] { get }
    func callAsFunction(_ hidden: Tensor, temb: Tensor?, context: Tensor?) throws -> (Tensor, [Tensor])
}

/// A UNet decoder stage: consumes `resnets.count` skip tensors, the last one first.
public protocol UNetUpBlock: Module {
    var resnets: [ResnetBlock2D] { get }
    var attentions: [Transformer2DModel] { get }
    var upsamplers: [Upsample2D] { get }
    func callAsFunction(_ hidden: Tensor, skips: [Tensor], temb: Tensor?, context: Tensor?,
                        upsampleSize: (Int, Int)?) throws -> Tensor
}

/// The mid stage (UNetMidBlock2DCrossAttn).
public protocol UNetMidBlock: Module {
    var resnets: [ResnetBlock2D] { get }
    var attentions: [Transformer2DModel] { get }
    func callAsFunction(_ hidden: Tensor, temb: Tensor?, context: Tensor?) throws -> Tensor
}

private func makeDownsamplers(_ add: Bool, _ channels: Int, padding: Int) throws -> [Downsample2D] {
    add ? [try Downsample2D(channels: channels, useConv: true, outChannels: channels, padding: padding)] : []
}

private func makeUpsamplers(_ add: Bool, _ channels: Int) throws -> [Upsample2D] {
    add ? [try Upsample2D(channels: channels, useConv: true, outChannels: channels)] : []
}

/// Pops skips from the end as diffusers does (`res_hidden_states_tuple[-1]`), checking the count
/// so a mis-wired UNet fails with a message rather than an index trap.
private func popSkip(_ skips: inout [Tensor], _ block: String) throws -> Tensor {
    guard let s = skips.popLast() else { throw TorchError("\(block): ran out of skip tensors") }
    return s
}

// MARK: down

/// diffusers DownBlock2D: resnets, then an optional strided-conv downsampler.
public final class DownBlock2D: Module, UNetDownBlock {
    public let resnets: [ResnetBlock2D]
    public let downsamplers: [Downsample2D]
    public var attentions: [Transformer2DModel] { [] }

    public init(inChannels: Int, outChannels: Int, numLayers: Int, addDownsample: Bool, downsamplePadding: Int = 1,
                settings s: UNetBlockSettings) throws {
        resnets = try (0..<numLayers).map { try s.resnet($0 == 0 ? inChannels : outChannels, outChannels) }
        downsamplers = try makeDownsamplers(addDownsample, outChannels, padding: downsamplePadding)
    }

    public func callAsFunction(_ hidden: Tensor, temb: Tensor?, context: Tensor? = nil) throws -> (Tensor, [Tensor]) {
        var h = hidden, outputs: [Tensor] = []
        for resnet in resnets {
            h = try resnet(h, temb: temb)
            outputs.append(h)
        }
        for d in downsamplers { h = try d(h) }
        if !downsamplers.isEmpty { outputs.append(h) }
        return (h, outputs)
    }
}

/// diffusers CrossAttnDownBlock2D: (resnet → Transformer2DModel) × numLayers, then a downsampler.
public final class CrossAttnDownBlock2D: Module, UNetDownBlock {
    public let attentions: [Transformer2DModel]
    public let resnets: [ResnetBlock2D]
    public let downsamplers: [Downsample2D]

    public init(inChannels: Int, outChannels: Int, numLayers: Int, addDownsample: Bool, downsamplePadding: Int = 1,
                settings s: UNetBlockSettings) throws {
        guard s.crossAttentionDim != nil else {
            throw TorchError("CrossAttnDownBlock2D: cross_attention_dim must be specified")
        }
        resnets = try (0..<numLayers).map { try s.resnet($0 == 0 ? inChannels : outChannels, outChannels) }
        attentions = try (0..<numLayers).map { _ in try s.transformer(outChannels) }
        downsamplers = try makeDownsamplers(addDownsample, outChannels, padding: downsamplePadding)
    }

    public func callAsFunction(_ hidden: Tensor, temb: Tensor?, context: Tensor?) throws -> (Tensor, [Tensor]) {
        var h = hidden, outputs: [Tensor] = []
        for (resnet, attn) in zip(resnets, attentions) {
            h = try attn(resnet(h, temb: temb), context: context)
            outputs.append(h)
        }
        for d in downsamplers { h = try d(h) }
        if !downsamplers.isEmpty { outputs.append(h) }
        return (h, outputs)
    }
}

// MARK: mid

/// diffusers UNetMidBlock2DCrossAttn: resnet, then (Transformer2DModel → resnet) × numLayers.
public final class UNetMidBlock2DCrossAttn: Module, UNetMidBlock {
    public let attentions: [Transformer2DModel]
    public let resnets: [ResnetBlock2D]

    public init(inChannels: Int, numLayers: Int = 1, outputScaleFactor: Double = 1, settings s: UNetBlockSettings) throws {
        guard s.crossAttentionDim != nil else {
            throw TorchError("UNetMidBlock2DCrossAttn: cross_attention_dim must be specified")
        }
        resnets = try (0...numLayers).map { _ in try s.resnet(inChannels, inChannels, outputScaleFactor: outputScaleFactor) }
        attentions = try (0..<numLayers).map { _ in try s.transformer(inChannels) }
    }

    public func callAsFunction(_ hidden: Tensor, temb: Tensor?, context: Tensor?) throws -> Tensor {
        var h = try resnets[0](hidden, temb: temb)
        for (attn, resnet) in zip(attentions, resnets.dropFirst()) {
            h = try resnet(attn(h, context: context), temb: temb)
        }
        return h
    }
}

// MARK: up

/// Input channels of the i-th up-block resnet: the previous feature map plus its skip.
private func upResnetChannels(_ i: Int, numLayers: Int, inChannels: Int, outChannels: Int,
                              prevOutputChannel: Int) -> (Int, Int) {
    let skip = i == numLayers - 1 ? inChannels : outChannels
    let input = i == 0 ? prevOutputChannel : outChannels
    return (input + skip, outChannels)
}

/// diffusers UpBlock2D: (concat skip → resnet) × numLayers, then an optional upsampler.
public final class UpBlock2D: Module, UNetUpBlock {
    public let resnets: [ResnetBlock2D]
    public let upsamplers: [Upsample2D]
    public var attentions: [Transformer2DModel] { [] }

    /// `inChannels`: channels of the deepest skip this block takes (the previous down stage's);
    /// `prevOutputChannel`: channels coming from the stage below.
    public init(inChannels: Int, prevOutputChannel: Int, outChannels: Int, numLayers: Int, addUpsample: Bool,
                settings s: UNetBlockSettings) throws {
        resnets = try (0..<numLayers).map {
            let (i, o) = upResnetChannels($0, numLayers: numLayers, inChannels: inChannels, outChannels: outChannels,
                                          prevOutputChannel: prevOutputChannel)
            return try s.resnet(i, o)
        }
        upsamplers = try makeUpsamplers(addUpsample, outChannels)
    }

    public func callAsFunction(_ hidden: Tensor, skips: [Tensor], temb: Tensor?, context: Tensor? = nil,
                               upsampleSize: (Int, Int)? = nil) throws -> Tensor {
        var h = hidden, skips = skips
        for resnet in resnets {
            h = try resnet(Tensor.cat([h, popSkip(&skips, "UpBlock2D")], dim: 1), temb: temb)
        }
        for u in upsamplers { h = try u(h, outputSize: upsampleSize) }
        return h
    }
}

/// diffusers CrossAttnUpBlock2D: (concat skip → resnet → Transformer2DModel) × numLayers, then an upsampler.
public final class CrossAttnUpBlock2D: Module, UNetUpBlock {
    public let attentions: [Transformer2DModel]
    public let resnets: [ResnetBlock2D]
    public let upsamplers: [Upsample2D]

    public init(inChannels: Int, prevOutputChannel: Int, outChannels: Int, numLayers: Int, addUpsample: Bool,
                settings s: UNetBlockSettings) throws {
        guard s.crossAttentionDim != nil else {
            throw TorchError("CrossAttnUpBlock2D: cross_attention_dim must be specified")
        }
        resnets = try (0..<numLayers).map {
            let (i, o) = upResnetChannels($0, numLayers: numLayers, inChannels: inChannels, outChannels: outChannels,
                                          prevOutputChannel: prevOutputChannel)
            return try s.resnet(i, o)
        }
        attentions = try (0..<numLayers).map { _ in try s.transformer(outChannels) }
        upsamplers = try makeUpsamplers(addUpsample, outChannels)
    }

    public func callAsFunction(_ hidden: Tensor, skips: [Tensor], temb: Tensor?, context: Tensor?,
                               upsampleSize: (Int, Int)? = nil) throws -> Tensor {
        var h = hidden, skips = skips
        for (resnet, attn) in zip(resnets, attentions) {
            h = try resnet(Tensor.cat([h, popSkip(&skips, "CrossAttnUpBlock2D")], dim: 1), temb: temb)
            h = try attn(h, context: context)
        }
        for u in upsamplers { h = try u(h, outputSize: upsampleSize) }
        return h
    }
}
