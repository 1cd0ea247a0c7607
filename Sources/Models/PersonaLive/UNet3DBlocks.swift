// UNet3DBlocks.swift — the building blocks of PersonaLive's denoising UNet, mirroring the PersonaLive
// repo (Moore-AnimateAnyone lineage):
//   * src/models/resnet.py: InflatedConv3d, InflatedGroupNorm, Downsample3D, Upsample3D, ResnetBlock3D
//     (with PersonaLive's per-frame time embedding);
//   * src/models/transformer_3d.py: Transformer3DModel;
//   * src/models/attention.py: TemporalBasicTransformerBlock (attn1 / attn2 / ff, optional attn_temp);
//   * src/models/unet_3d_blocks.py: CrossAttnDownBlock3D, DownBlock3D, UNetMidBlock3DCrossAttn,
//     UpBlock3D, CrossAttnUpBlock3D, each with `motion_modules` and `temporal_modules` lists.
// Video tensors are (b, c, f, h, w) throughout; "inflated" layers run the 2D op on every frame.
import NN
import Torch

// MARK: frame layout

/// b c f h w → (b f) c h w: every frame becomes an image of the batch.
func framesToBatch(_ x: Tensor) throws -> Tensor {
    let s = x.shape
    guard s.count == 5 else { throw TorchError("expected a (b, c, f, h, w) video tensor, got \(s)") }
    return try x.permute([0, 2, 1, 3, 4]).reshape([s[0] * s[2], s[1], s[3], s[4]])
}

/// (b f) c h w → b c f h w.
func batchToFrames(_ x: Tensor, frames f: Int) throws -> Tensor {
    let s = x.shape
    return try x.reshape([s[0] / f, f, s[1], s[2], s[3]]).permute([0, 2, 1, 3, 4])
}

// MARK: inflated layers (resnet.py)

/// InflatedConv3d: an nn.Conv2d (same `weight` / `bias` keys) applied to each frame.
public final class InflatedConv3d: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: Int
    public let padding: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0) throws {
        // nn.Conv2d's default init (kaiming_uniform(a=√5) ⇒ U(±1/√fan_in) for weight and bias).
        let bound = fanInBound(inChannels * kernelSize * kernelSize)
        weight = try makeParameter([outChannels, inChannels, kernelSize, kernelSize], .uniform(bound))
        bias = try makeParameter([outChannels], .uniform(bound))
        self.stride = stride
        self.padding = padding
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let y = try F.conv2d(framesToBatch(x), weight: weight, bias: bias, stride: (stride, stride),
                             padding: (padding, padding))
        return try batchToFrames(y, frames: x.shape[2])
    }
}

/// InflatedGroupNorm (per-frame statistics) or, with `perFrame: false`, the plain nn.GroupNorm the
/// reference builds when `use_inflated_groupnorm` is off — applied to the 5-D tensor, so its
/// statistics span all frames. Keys `weight` / `bias` either way.
public final class InflatedGroupNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let numGroups: Int
    public let eps: Double
    public let perFrame: Bool

    public init(numGroups: Int, numChannels: Int, eps: Double, perFrame: Bool = true) throws {
        guard numGroups > 0, numChannels % numGroups == 0 else {
            throw TorchError("GroupNorm: \(numChannels) channels are not divisible into \(numGroups) groups")
        }
        weight = try makeParameter([numChannels], .ones)
        bias = try makeParameter([numChannels], .zeros)
        self.numGroups = numGroups
        self.eps = eps
        self.perFrame = perFrame
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard perFrame else { return try F.groupNorm(x, groups: numGroups, weight: weight, bias: bias, eps: eps) }
        let y = try F.groupNorm(framesToBatch(x), groups: numGroups, weight: weight, bias: bias, eps: eps)
        return try batchToFrames(y, frames: x.shape[2])
    }
}

/// Downsample3D: a stride-2 InflatedConv3d under `conv` (the reference implements only use_conv
/// with non-zero padding and raises otherwise).
public final class Downsample3D: Module {
    public let conv: InflatedConv3d
    public let channels: Int

    public init(channels: Int, outChannels: Int? = nil, padding: Int = 1) throws {
        guard padding > 0 else { throw TorchError("Downsample3D: padding 0 is not implemented (as in the reference)") }
        self.channels = channels
        conv = try InflatedConv3d(channels, outChannels ?? channels, kernelSize: 3, stride: 2, padding: padding)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.dim == 5, x.shape[1] == channels else {
            throw TorchError("Downsample3D: expected (b, \(channels), f, h, w), got \(x.shape)")
        }
        return try conv(x)
    }
}

/// Upsample3D: nearest ×2 on (h, w) — F.interpolate(scale [1, 2, 2]) on the 5-D tensor, which is
/// the per-frame 2D nearest upsample — then a 3×3 InflatedConv3d under `conv`.
public final class Upsample3D: Module {
    public let conv: InflatedConv3d
    public let channels: Int

    public init(channels: Int, outChannels: Int? = nil) throws {
        self.channels = channels
        conv = try InflatedConv3d(channels, outChannels ?? channels, kernelSize: 3, padding: 1)
    }

    /// `outputSize` (h, w) replaces the ×2 factor when the UNet input is not a multiple of
    /// 2^(upsamplers), so the upsampled map meets its skip.
    public func callAsFunction(_ x: Tensor, outputSize: (Int, Int)? = nil) throws -> Tensor {
        guard x.dim == 5, x.shape[1] == channels else {
            throw TorchError("Upsample3D: expected (b, \(channels), f, h, w), got \(x.shape)")
        }
        var h = try framesToBatch(x)
        // upsample_nearest has no bfloat16 kernel in the reference's torch, which upcasts; same here.
        let dtype = h.dtype
        if dtype == .bfloat16 { h = try h.to(.float32) }
        if let outputSize {
            h = try F.interpolate(h, size: outputSize, mode: .nearest)
        } else {
            h = try F.interpolate(h, scaleFactor: (2, 2), mode: .nearest)
        }
        if dtype == .bfloat16 { h = try h.to(dtype) }
        return try conv(batchToFrames(h, frames: x.shape[2]))
    }
}

/// ResnetBlock3D: ResnetBlock2D with inflated convs/norms. The time embedding is per frame when it
/// has b·f rows (PersonaLive's per-frame timesteps: '(b f) c -> b c f', broadcast over h, w) and
/// per sample otherwise.
public final class ResnetBlock3D: Module {
    public struct Config: Sendable {
        public var inChannels: Int
        public var outChannels: Int?
        public var tembChannels: Int? = 512
        public var groups: Int = 32
        public var groupsOut: Int?
        public var eps: Double = 1e-6
        public var dropout: Double = 0
        public var timeEmbeddingNorm: String = "default"
        public var nonLinearity: String = "swish"
        public var outputScaleFactor: Double = 1
        public var useInShortcut: Bool?
        public var useInflatedGroupNorm: Bool = true

        public init(inChannels: Int, outChannels: Int? = nil, tembChannels: Int? = 512, groups: Int = 32,
                    eps: Double = 1e-6, dropout: Double = 0, timeEmbeddingNorm: String = "default",
                    nonLinearity: String = "swish", outputScaleFactor: Double = 1, useInflatedGroupNorm: Bool = true) {
            self.inChannels = inChannels
            self.outChannels = outChannels
            self.tembChannels = tembChannels
            self.groups = groups
            self.eps = eps
            self.dropout = dropout
            self.timeEmbeddingNorm = timeEmbeddingNorm
            self.nonLinearity = nonLinearity
            self.outputScaleFactor = outputScaleFactor
            self.useInflatedGroupNorm = useInflatedGroupNorm
        }
    }

    // Declaration order = the reference's registration order (state-dict key order).
    public let norm1: InflatedGroupNorm
    public let conv1: InflatedConv3d
    public let time_emb_proj: Linear?
    public let norm2: InflatedGroupNorm
    public let dropout: Dropout
    public let conv2: InflatedConv3d
    public let conv_shortcut: InflatedConv3d?
    public let config: Config
    let act: DiffusersActivation

    public init(_ c: Config) throws {
        config = c
        let outC = c.outChannels ?? c.inChannels
        // The reference maps "swish" to F.silu and "silu" to nn.SiLU (same function) and "mish" to nn.Mish.
        act = try DiffusersActivation(named: c.nonLinearity)
        norm1 = try InflatedGroupNorm(numGroups: c.groups, numChannels: c.inChannels, eps: c.eps,
                                      perFrame: c.useInflatedGroupNorm)
        conv1 = try InflatedConv3d(c.inChannels, outC, kernelSize: 3, padding: 1)
        switch (c.tembChannels, c.timeEmbeddingNorm) {
        case (nil, _): time_emb_proj = nil
        case (let t?, "default"): time_emb_proj = try Linear(t, outC)
        case (let t?, "scale_shift"): time_emb_proj = try Linear(t, 2 * outC)
        case (_, let other): throw TorchError("ResnetBlock3D: unknown time_embedding_norm '\(other)'")
        }
        norm2 = try InflatedGroupNorm(numGroups: c.groupsOut ?? c.groups, numChannels: outC, eps: c.eps,
                                      perFrame: c.useInflatedGroupNorm)
        dropout = Dropout(c.dropout)
        conv2 = try InflatedConv3d(outC, outC, kernelSize: 3, padding: 1)
        conv_shortcut = (c.useInShortcut ?? (c.inChannels != outC))
            ? try InflatedConv3d(c.inChannels, outC, kernelSize: 1) : nil
    }

    /// input: (b, c, f, h, w); temb: (b·f, C) per frame, (b, C) per sample or (1, C), or nil.
    public func callAsFunction(_ input: Tensor, temb: Tensor?) throws -> Tensor {
        guard input.dim == 5 else { throw TorchError("ResnetBlock3D: expected (b, c, f, h, w), got \(input.shape)") }
        let (b, f) = (input.shape[0], input.shape[2])
        var h = try conv1(act(norm1(input)))
        var t: Tensor?
        if let proj = time_emb_proj, let temb {
            let e = try proj(act(temb))
            if e.shape[0] == b * f {
                // '(b f) c -> b c f', then broadcast over h, w.
                t = try e.reshape([b, f, e.shape[1]]).permute([0, 2, 1]).unsqueeze(-1).unsqueeze(-1)
            } else {
                t = try e.unsqueeze(-1).unsqueeze(-1).unsqueeze(-1)
            }
        }
        if let t, config.timeEmbeddingNorm == "default" { h = try h + t }
        h = try norm2(h)
        if let t, config.timeEmbeddingNorm == "scale_shift" {
            let parts = try t.chunk(2, dim: 1)
            h = try h * (parts[0] + 1) + parts[1]
        }
        h = try conv2(dropout(act(h)))
        let shortcut = try conv_shortcut.map { try $0(input) } ?? input
        let out = try shortcut + h
        return config.outputScaleFactor == 1 ? out : try out / config.outputScaleFactor
    }
}

// MARK: spatial transformer (attention.py, transformer_3d.py)

/// TemporalBasicTransformerBlock: the per-frame spatial transformer block of the 3D UNet —
/// self-attention (attn1), cross-attention to the CLIP token (attn2), GEGLU feed-forward, and with
/// `unet_use_temporal_attention` an extra attention over frames (attn_temp, zero-initialised out).
public final class TemporalBasicTransformerBlock: Module {
    // Declaration order = the reference's registration order: attn1, norm1, attn2, norm2, ff, norm3.
    public let attn1: Attention
    public let norm1: LayerNorm
    public let attn2: Attention?
    public let norm2: LayerNorm?
    public let ff: FeedForward
    public let norm3: LayerNorm
    public let attn_temp: Attention?
    public let norm_temp: LayerNorm?
    public let dim: Int

    /// Reference attention (ReferenceAttentionControl, read mode): sees this block's norm1 output
    /// ((b·f, L, C)) and the frame count, and may return extra key/value tokens per sample
    /// ((b, L', C)), which every frame of the sample attends to after its own tokens. nil (or a nil
    /// result) is plain self-attention.
    public var selfAttentionHook: ((_ block: TemporalBasicTransformerBlock, _ normed: Tensor, _ videoLength: Int) throws -> Tensor?)?

    public init(dim: Int, heads: Int, headDim: Int, dropout: Double = 0, crossAttentionDim: Int?,
                activation: String = "geglu", attentionBias: Bool = false, upcastAttention: Bool = false,
                temporalAttention: Bool = false) throws {
        self.dim = dim
        attn1 = try Attention(queryDim: dim, heads: heads, dimHead: headDim, dropout: dropout, bias: attentionBias,
                              upcastAttention: upcastAttention)
        norm1 = try LayerNorm(dim)
        if let crossAttentionDim {
            attn2 = try Attention(queryDim: dim, crossAttentionDim: crossAttentionDim, heads: heads, dimHead: headDim,
                                  dropout: dropout, bias: attentionBias, upcastAttention: upcastAttention)
            norm2 = try LayerNorm(dim)
        } else {
            attn2 = nil
            norm2 = nil
        }
        ff = try FeedForward(dim: dim, dropout: dropout, activation: activation)
        norm3 = try LayerNorm(dim)
        if temporalAttention {
            let a = try Attention(queryDim: dim, heads: heads, dimHead: headDim, dropout: dropout, bias: attentionBias,
                                  upcastAttention: upcastAttention)
            if ParameterInit.mode != .uninitialized {
                try Torch.noGrad { try (a.to_out[0] as! Linear).weight.zero_() }
            }
            attn_temp = a
            norm_temp = try LayerNorm(dim)
        } else {
            attn_temp = nil
            norm_temp = nil
        }
    }

    /// hidden: (b·f, L, dim); context: (b·f, S, cross dim).
    public func callAsFunction(_ hidden: Tensor, context: Tensor?, videoLength f: Int) throws -> Tensor {
        let n1 = try norm1(hidden)
        var h: Tensor
        if let hook = selfAttentionHook, let extra = try hook(self, n1, f) {
            // Queries are the frame's own tokens; keys/values = [own tokens, reference (+ keyframe) tokens].
            // The reference projects the shared tokens after repeating them to every frame
            // (to_k(cat([n1, repeat(extra)]))); a linear layer acts on each token alone, so projecting
            // them once per sample and repeating the keys and values gives the same rows, f times cheaper.
            let (bf, l) = (n1.shape[0], n1.shape[1])
            let b = bf / f
            func keysValues(_ proj: Linear) throws -> Tensor {
                let own = try proj(n1), shared = try proj(extra)
                let (ls, c) = (shared.shape[1], shared.shape[2])
                return try Tensor.cat([own.reshape([b, f, l, c]), shared.unsqueeze(1).expand([b, f, ls, c])], dim: 2)
                    .view([bf, l + ls, c])
            }
            h = try attn1.output(attn1.attend(q: attn1.to_q(n1), k: keysValues(attn1.to_k), v: keysValues(attn1.to_v)))
                + hidden
        } else {
            h = try attn1(n1) + hidden
        }
        if let attn2, let norm2 {
            guard let context else {
                throw TorchError("TemporalBasicTransformerBlock: cross-attention needs encoder hidden states")
            }
            h = try attn2(norm2(h), context: context) + h
        }
        h = try ff(norm3(h)) + h
        if let attn_temp, let norm_temp {
            // '(b f) d c -> (b d) f c': each location attends over the frames.
            let (bf, d, c) = (h.shape[0], h.shape[1], h.shape[2])
            let b = bf / f
            var t = try h.reshape([b, f, d, c]).permute([0, 2, 1, 3]).reshape([b * d, f, c])
            t = try attn_temp(norm_temp(t)) + t
            h = try t.reshape([b, d, f, c]).permute([0, 2, 1, 3]).reshape([bf, d, c])
        }
        return h
    }
}

/// Transformer3DModel: Transformer2DModel run on every frame — GroupNorm (eps 1e-6), proj_in
/// (1×1 conv or linear), TemporalBasicTransformerBlocks, proj_out, residual.
public final class Transformer3DModel: Module {
    public let norm: GroupNorm
    public let proj_in: Module
    public let transformer_blocks: [TemporalBasicTransformerBlock]
    public let proj_out: Module
    public let inChannels: Int
    public let useLinearProjection: Bool

    public init(heads: Int, headDim: Int, inChannels: Int, numLayers: Int = 1, dropout: Double = 0,
                normNumGroups: Int = 32, crossAttentionDim: Int?, useLinearProjection: Bool = false,
                upcastAttention: Bool = false, temporalAttention: Bool = false) throws {
        let inner = heads * headDim
        self.inChannels = inChannels
        self.useLinearProjection = useLinearProjection
        norm = try GroupNorm(numGroups: normNumGroups, numChannels: inChannels, eps: 1e-6)
        proj_in = useLinearProjection ? try Linear(inChannels, inner) : try Conv2d(inChannels, inner, kernelSize: 1)
        transformer_blocks = try (0..<numLayers).map { _ in
            try TemporalBasicTransformerBlock(dim: inner, heads: heads, headDim: headDim, dropout: dropout,
                                              crossAttentionDim: crossAttentionDim, upcastAttention: upcastAttention,
                                              temporalAttention: temporalAttention)
        }
        proj_out = useLinearProjection ? try Linear(inner, inChannels) : try Conv2d(inner, inChannels, kernelSize: 1)
    }

    /// hidden: (b, c, f, h, w); context: (b, S, D) — repeated to every frame — or (b·f, S, D).
    public func callAsFunction(_ hidden: Tensor, context: Tensor?) throws -> Tensor {
        guard hidden.dim == 5, hidden.shape[1] == inChannels else {
            throw TorchError("Transformer3DModel: expected (b, \(inChannels), f, h, w), got \(hidden.shape)")
        }
        let f = hidden.shape[2]
        let residual = try framesToBatch(hidden)
        let (bf, h, w) = (residual.shape[0], residual.shape[2], residual.shape[3])
        var ctx = context
        if let e = context, e.shape[0] != bf {
            guard e.shape[0] * f == bf else {
                throw TorchError("Transformer3DModel: encoder hidden states batch \(e.shape[0]) fits neither b nor b·f")
            }
            ctx = try e.repeatInterleave(f, dim: 0)  // 'b n c -> (b f) n c'
        }
        let projIn = proj_in as! any UnaryLayer, projOut = proj_out as! any UnaryLayer
        var x = try norm(residual)
        let inner = transformer_blocks.first?.dim ?? inChannels
        // The 1×1 conv runs before the token reshape and the linear projection after it, as in the reference.
        if useLinearProjection {
            x = try projIn(x.permute([0, 2, 3, 1]).reshape([bf, h * w, inChannels]))
        } else {
            x = try projIn(x).permute([0, 2, 3, 1]).reshape([bf, h * w, inner])
        }
        for block in transformer_blocks { x = try block(x, context: ctx, videoLength: f) }
        if useLinearProjection {
            x = try projOut(x).reshape([bf, h, w, inChannels]).permute([0, 3, 1, 2]).contiguous()
        } else {
            x = try projOut(x.reshape([bf, h, w, inner]).permute([0, 3, 1, 2]).contiguous())
        }
        return try batchToFrames(x + residual, frames: f)
    }
}

// MARK: UNet stages (unet_3d_blocks.py)

/// What get_down_block / get_up_block hand every block of one 3D UNet; the UNet fills in the
/// per-block values (heads, motion / temporal module configs) on a copy.
public struct UNet3DBlockSettings: Sendable {
    public var tembChannels: Int?
    public var resnetEps: Double = 1e-5
    public var resnetGroups: Int = 32
    public var resnetActFn: String = "silu"
    public var resnetTimeScaleShift: String = "default"
    public var dropout: Double = 0
    public var numAttentionHeads: Int = 8
    public var crossAttentionDim: Int?
    public var useLinearProjection: Bool = false
    public var upcastAttention: Bool = false
    public var useInflatedGroupNorm: Bool = true
    public var unetUseTemporalAttention: Bool = false
    /// nil: this block has no motion modules (Spatial_Cross to the motion tokens).
    public var motionModule: VanillaTemporalModule.Config?
    /// nil: this block has no temporal modules (Temporal_Self over frames).
    public var temporalModule: VanillaTemporalModule.Config?

    public init(tembChannels: Int?) { self.tembChannels = tembChannels }

    func resnet(_ inC: Int, _ outC: Int, outputScaleFactor: Double = 1) throws -> ResnetBlock3D {
        try ResnetBlock3D(.init(inChannels: inC, outChannels: outC, tembChannels: tembChannels, groups: resnetGroups,
                                eps: resnetEps, dropout: dropout, timeEmbeddingNorm: resnetTimeScaleShift,
                                nonLinearity: resnetActFn, outputScaleFactor: outputScaleFactor,
                                useInflatedGroupNorm: useInflatedGroupNorm))
    }

    /// The reference builds Transformer3DModel(heads, channels // heads, …) with one layer.
    func transformer(_ channels: Int) throws -> Transformer3DModel {
        guard numAttentionHeads > 0, channels % numAttentionHeads == 0 else {
            throw TorchError("UNet3D block: \(channels) channels do not split into \(numAttentionHeads) heads")
        }
        return try Transformer3DModel(heads: numAttentionHeads, headDim: channels / numAttentionHeads,
                                      inChannels: channels, normNumGroups: resnetGroups,
                                      crossAttentionDim: crossAttentionDim, useLinearProjection: useLinearProjection,
                                      upcastAttention: upcastAttention, temporalAttention: unetUseTemporalAttention)
    }

    /// `count` motion and temporal modules of width `channels` (empty lists when disabled).
    func stageModules(_ count: Int, _ channels: Int) throws -> ([VanillaTemporalModule], [VanillaTemporalModule]) {
        let motion = try motionModule.map { c in try (0..<count).map { _ in try VanillaTemporalModule(c, inChannels: channels) } } ?? []
        let temporal = try temporalModule.map { c in try (0..<count).map { _ in try VanillaTemporalModule(c, inChannels: channels) } } ?? []
        return (motion, temporal)
    }
}

/// Runs the i-th motion module (with the motion tokens) and temporal module (without tokens) of a
/// stage, where present: the order PersonaLive uses after every resnet (+ spatial transformer).
private func applyStageModules(_ h: Tensor, _ i: Int, motion: [VanillaTemporalModule], temporal: [VanillaTemporalModule],
                               motionTokens: Tensor?) throws -> Tensor {
    var h = h
    if i < motion.count { h = try motion[i](hidden: h, motionTokens: motionTokens) }
    if i < temporal.count { h = try temporal[i](hidden: h) }
    return h
}

private func popSkip(_ skips: inout [Tensor], _ block: String) throws -> Tensor {
    guard let s = skips.popLast() else { throw TorchError("\(block): ran out of skip tensors") }
    return s
}

/// A 3D UNet encoder stage: returns the stage output and the skips it contributes.
public protocol UNet3DDownBlock: Module {
    var resnets: [ResnetBlock3D] { get }
    var attentions: [Transformer3DModel] { get }
    var motion_modules: [VanillaTemporalModule] { get }
    var temporal_modules: [VanillaTemporalModule] { get }
    var downsamplers: [Downsample3D] { get }
    /// context: CLIP tokens (b, S, D); motionTokens: (b, f, n, d) or (b·f, n, d).
    func callAsFunction(_ hidden: Tensor, temb: Tensor?, context: Tensor?, motionTokens: Tensor?) throws -> (Tensor, [Tensor])
}

/// A 3D UNet decoder stage: consumes `resnets.count` skips, the last one first.
public protocol UNet3DUpBlock: Module {
    var resnets: [ResnetBlock3D] { get }
    var attentions: [Transformer3DModel] { get }
    var motion_modules: [VanillaTemporalModule] { get }
    var temporal_modules: [VanillaTemporalModule] { get }
    var upsamplers: [Upsample3D] { get }
    func callAsFunction(_ hidden: Tensor, skips: [Tensor], temb: Tensor?, context: Tensor?, motionTokens: Tensor?,
                        upsampleSize: (Int, Int)?) throws -> Tensor
}

/// DownBlock3D: (resnet → motion → temporal) × numLayers, then an optional downsampler.
public final class DownBlock3D: Module, UNet3DDownBlock {
    public let resnets: [ResnetBlock3D]
    public let motion_modules: [VanillaTemporalModule]
    public let temporal_modules: [VanillaTemporalModule]
    public let downsamplers: [Downsample3D]
    public var attentions: [Transformer3DModel] { [] }

    public init(inChannels: Int, outChannels: Int, numLayers: Int, addDownsample: Bool, downsamplePadding: Int = 1,
                settings s: UNet3DBlockSettings) throws {
        resnets = try (0..<numLayers).map { try s.resnet($0 == 0 ? inChannels : outChannels, outChannels) }
        (motion_modules, temporal_modules) = try s.stageModules(numLayers, outChannels)
        downsamplers = addDownsample ? [try Downsample3D(channels: outChannels, padding: downsamplePadding)] : []
    }

    public func callAsFunction(_ hidden: Tensor, temb: Tensor?, context: Tensor? = nil,
                               motionTokens: Tensor?) throws -> (Tensor, [Tensor]) {
        var h = hidden, outputs: [Tensor] = []
        for (i, resnet) in resnets.enumerated() {
            h = try resnet(h, temb: temb)
            h = try applyStageModules(h, i, motion: motion_modules, temporal: temporal_modules, motionTokens: motionTokens)
            outputs.append(h)
        }
        for d in downsamplers { h = try d(h) }
        if !downsamplers.isEmpty { outputs.append(h) }
        return (h, outputs)
    }
}

/// CrossAttnDownBlock3D: (resnet → Transformer3DModel → motion → temporal) × numLayers, then a downsampler.
public final class CrossAttnDownBlock3D: Module, UNet3DDownBlock {
    public let attentions: [Transformer3DModel]
    public let resnets: [ResnetBlock3D]
    public let motion_modules: [VanillaTemporalModule]
    public let temporal_modules: [VanillaTemporalModule]
    public let downsamplers: [Downsample3D]

    public init(inChannels: Int, outChannels: Int, numLayers: Int, addDownsample: Bool, downsamplePadding: Int = 1,
                settings s: UNet3DBlockSettings) throws {
        guard s.crossAttentionDim != nil else { throw TorchError("CrossAttnDownBlock3D: cross_attention_dim must be specified") }
        resnets = try (0..<numLayers).map { try s.resnet($0 == 0 ? inChannels : outChannels, outChannels) }
        attentions = try (0..<numLayers).map { _ in try s.transformer(outChannels) }
        (motion_modules, temporal_modules) = try s.stageModules(numLayers, outChannels)
        downsamplers = addDownsample ? [try Downsample3D(channels: outChannels, padding: downsamplePadding)] : []
    }

    public func callAsFunction(_ hidden: Tensor, temb: Tensor?, context: Tensor?,
                               motionTokens: Tensor?) throws -> (Tensor, [Tensor]) {
        var h = hidden, outputs: [Tensor] = []
        for (i, (resnet, attn)) in zip(resnets, attentions).enumerated() {
            h = try attn(resnet(h, temb: temb), context: context)
            h = try applyStageModules(h, i, motion: motion_modules, temporal: temporal_modules, motionTokens: motionTokens)
            outputs.append(h)
        }
        for d in downsamplers { h = try d(h) }
        if !downsamplers.isEmpty { outputs.append(h) }
        return (h, outputs)
    }
}

/// UNetMidBlock3DCrossAttn: resnet, then (Transformer3DModel → motion → temporal → resnet) × numLayers.
public final class UNetMidBlock3DCrossAttn: Module {
    public let attentions: [Transformer3DModel]
    public let resnets: [ResnetBlock3D]
    public let motion_modules: [VanillaTemporalModule]
    public let temporal_modules: [VanillaTemporalModule]

    public init(inChannels: Int, numLayers: Int = 1, outputScaleFactor: Double = 1, settings s: UNet3DBlockSettings) throws {
        guard s.crossAttentionDim != nil else { throw TorchError("UNetMidBlock3DCrossAttn: cross_attention_dim must be specified") }
        resnets = try (0...numLayers).map { _ in try s.resnet(inChannels, inChannels, outputScaleFactor: outputScaleFactor) }
        attentions = try (0..<numLayers).map { _ in try s.transformer(inChannels) }
        (motion_modules, temporal_modules) = try s.stageModules(numLayers, inChannels)
    }

    public func callAsFunction(_ hidden: Tensor, temb: Tensor?, context: Tensor?, motionTokens: Tensor?) throws -> Tensor {
        var h = try resnets[0](hidden, temb: temb)
        for (i, (attn, resnet)) in zip(attentions, resnets.dropFirst()).enumerated() {
            h = try attn(h, context: context)
            h = try applyStageModules(h, i, motion: motion_modules, temporal: temporal_modules, motionTokens: motionTokens)
            h = try resnet(h, temb: temb)
        }
        return h
    }
}

/// Input channels of the i-th up-block resnet: the previous feature map plus its skip.
private func upResnetChannels(_ i: Int, numLayers: Int, inChannels: Int, outChannels: Int,
                              prevOutputChannel: Int) -> (Int, Int) {
    let skip = i == numLayers - 1 ? inChannels : outChannels
    let input = i == 0 ? prevOutputChannel : outChannels
    return (input + skip, outChannels)
}

/// UpBlock3D: (concat skip → resnet → motion → temporal) × numLayers, then an optional upsampler.
public final class UpBlock3D: Module, UNet3DUpBlock {
    public let resnets: [ResnetBlock3D]
    public let motion_modules: [VanillaTemporalModule]
    public let temporal_modules: [VanillaTemporalModule]
    public let upsamplers: [Upsample3D]
    public var attentions: [Transformer3DModel] { [] }

    public init(inChannels: Int, prevOutputChannel: Int, outChannels: Int, numLayers: Int, addUpsample: Bool,
                settings s: UNet3DBlockSettings) throws {
        resnets = try (0..<numLayers).map {
            let (i, o) = upResnetChannels($0, numLayers: numLayers, inChannels: inChannels, outChannels: outChannels,
                                          prevOutputChannel: prevOutputChannel)
            return try s.resnet(i, o)
        }
        (motion_modules, temporal_modules) = try s.stageModules(numLayers, outChannels)
        upsamplers = addUpsample ? [try Upsample3D(channels: outChannels)] : []
    }

    public func callAsFunction(_ hidden: Tensor, skips: [Tensor], temb: Tensor?, context: Tensor? = nil,
                               motionTokens: Tensor?, upsampleSize: (Int, Int)? = nil) throws -> Tensor {
        var h = hidden, skips = skips
        for (i, resnet) in resnets.enumerated() {
            h = try resnet(Tensor.cat([h, popSkip(&skips, "UpBlock3D")], dim: 1), temb: temb)
            h = try applyStageModules(h, i, motion: motion_modules, temporal: temporal_modules, motionTokens: motionTokens)
        }
        for u in upsamplers { h = try u(h, outputSize: upsampleSize) }
        return h
    }
}

/// CrossAttnUpBlock3D: (concat skip → resnet → Transformer3DModel → motion → temporal) × numLayers,
/// then an optional upsampler.
public final class CrossAttnUpBlock3D: Module, UNet3DUpBlock {
    public let attentions: [Transformer3DModel]
    public let resnets: [ResnetBlock3D]
    public let motion_modules: [VanillaTemporalModule]
    public let temporal_modules: [VanillaTemporalModule]
    public let upsamplers: [Upsample3D]

    public init(inChannels: Int, prevOutputChannel: Int, outChannels: Int, numLayers: Int, addUpsample: Bool,
                settings s: UNet3DBlockSettings) throws {
        guard s.crossAttentionDim != nil else { throw TorchError("CrossAttnUpBlock3D: cross_attention_dim must be specified") }
        resnets = try (0..<numLayers).map {
            let (i, o) = upResnetChannels($0, numLayers: numLayers, inChannels: inChannels, outChannels: outChannels,
                                          prevOutputChannel: prevOutputChannel)
            return try s.resnet(i, o)
        }
        attentions = try (0..<numLayers).map { _ in try s.transformer(outChannels) }
        (motion_modules, temporal_modules) = try s.stageModules(numLayers, outChannels)
        upsamplers = addUpsample ? [try Upsample3D(channels: outChannels)] : []
    }

    public func callAsFunction(_ hidden: Tensor, skips: [Tensor], temb: Tensor?, context: Tensor?,
                               motionTokens: Tensor?, upsampleSize: (Int, Int)? = nil) throws -> Tensor {
        var h = hidden, skips = skips
        for (i, (resnet, attn)) in zip(resnets, attentions).enumerated() {
            h = try resnet(Tensor.cat([h, popSkip(&skips, "CrossAttnUpBlock3D")], dim: 1), temb: temb)
            h = try attn(h, context: context)
            h = try applyStageModules(h, i, motion: motion_modules, temporal: temporal_modules, motionTokens: motionTokens)
        }
        for u in upsamplers { h = try u(h, outputSize: upsampleSize) }
        return h
    }
}
