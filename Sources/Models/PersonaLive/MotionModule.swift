// MotionModule.swift — mirrors PersonaLive's src/models/motion_module.py (AnimateDiff's
// VanillaTemporalModule, TemporalTransformer3DModel, TemporalTransformerBlock, VersatileAttention,
// PositionalEncoding), including the fork's attention block types:
//   * `Spatial_Cross`: each frame's h·w tokens cross-attend to that frame's motion tokens
//     (b, f, 32, 16) — the denoiser's `motion_modules.N`;
//   * `Temporal_Self`: each spatial location attends over the frames, with a sinusoidal
//     positional encoding added inside the attention — the denoiser's `temporal_modules.N`.
// Video tensors are (b, c, f, h, w) throughout.
import Foundation
import NN
import Torch

/// VanillaTemporalModule: a TemporalTransformer3DModel with a residual around it.
public final class VanillaTemporalModule: Module {
    /// The reference constructor's keyword arguments (`motion_module_kwargs` /
    /// `temporal_module_kwargs` of the UNet's `unet_additional_kwargs`, plus `in_channels`).
    public struct Config: Codable, Sendable, Equatable {
        /// Absent in the UNet's kwargs: the UNet passes the stage's channel count instead.
        public var in_channels: Int?
        public var num_attention_heads: Int = 8
        public var num_transformer_block: Int = 2
        public var attention_block_types: [String] = ["Temporal_Self", "Temporal_Self"]
        /// Used by `*_Cross` blocks only.
        public var cross_attention_dim: Int? = 768
        public var temporal_position_encoding: Bool = false
        public var temporal_position_encoding_max_len: Int = 24
        public var temporal_attention_dim_div: Int = 1
        public var zero_initialize: Bool = true
        /// The last frame is a reference frame that bypasses the module.
        public var skip_ref_image: Bool = false
        /// The last frame of the output is replaced by the input's last frame.
        public var cond_ref_image: Bool = false

        public init(in_channels: Int? = nil, num_attention_heads: Int = 8, num_transformer_block: Int = 2,
                    attention_block_types: [String] = ["Temporal_Self", "Temporal_Self"],
                    cross_attention_dim: Int? = 768, temporal_position_encoding: Bool = false,
                    temporal_position_encoding_max_len: Int = 24, temporal_attention_dim_div: Int = 1,
                    zero_initialize: Bool = true) {
            self.in_channels = in_channels
            self.num_attention_heads = num_attention_heads
            self.num_transformer_block = num_transformer_block
            self.attention_block_types = attention_block_types
            self.cross_attention_dim = cross_attention_dim
            self.temporal_position_encoding = temporal_position_encoding
            self.temporal_position_encoding_max_len = temporal_position_encoding_max_len
            self.temporal_attention_dim_div = temporal_attention_dim_div
            self.zero_initialize = zero_initialize
        }

        /// PersonaLive's motion module (`motion_module_kwargs` of inference_stage3.yaml).
        public static let personaliveMotion = Config(
            num_attention_heads: 8, num_transformer_block: 1, attention_block_types: ["Spatial_Cross", "Spatial_Cross"],
            cross_attention_dim: 16, temporal_position_encoding: false, temporal_position_encoding_max_len: 32)

        /// PersonaLive's temporal module (`temporal_module_kwargs` of inference_stage3.yaml).
        public static let personaliveTemporal = Config(
            num_attention_heads: 8, num_transformer_block: 1, attention_block_types: ["Temporal_Self", "Temporal_Self"],
            temporal_position_encoding: true, temporal_position_encoding_max_len: 32)

        enum K: String, CodingKey, CaseIterable {
            case in_channels, num_attention_heads, num_transformer_block, attention_block_types, cross_attention_dim,
                 cross_frame_attention_mode, temporal_position_encoding, temporal_position_encoding_max_len,
                 temporal_attention_dim_div, zero_initialize, skip_ref_image, cond_ref_image
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: K.self)
            in_channels = try c.value(.in_channels, default: nil)
            num_attention_heads = try c.value(.num_attention_heads, default: 8)
            num_transformer_block = try c.value(.num_transformer_block, default: 2)
            attention_block_types = try c.value(.attention_block_types, default: ["Temporal_Self", "Temporal_Self"])
            cross_attention_dim = try c.value(.cross_attention_dim, default: 768)
            temporal_position_encoding = try c.value(.temporal_position_encoding, default: false)
            temporal_position_encoding_max_len = try c.value(.temporal_position_encoding_max_len, default: 24)
            temporal_attention_dim_div = try c.value(.temporal_attention_dim_div, default: 1)
            zero_initialize = try c.value(.zero_initialize, default: true)
            skip_ref_image = try c.value(.skip_ref_image, default: false)
            cond_ref_image = try c.value(.cond_ref_image, default: false)
            // The reference stores cross_frame_attention_mode but never reads it.
            if let mode: String = try c.value(.cross_frame_attention_mode, default: nil) {
                throw TorchError("VanillaTemporalModule: cross_frame_attention_mode '\(mode)' is not supported (null only)")
            }
            try validate()
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: K.self)
            try c.encodeIfPresent(in_channels, forKey: .in_channels)
            try c.encode(num_attention_heads, forKey: .num_attention_heads)
            try c.encode(num_transformer_block, forKey: .num_transformer_block)
            try c.encode(attention_block_types, forKey: .attention_block_types)
            try c.encode(cross_attention_dim, forKey: .cross_attention_dim)
            try c.encode(temporal_position_encoding, forKey: .temporal_position_encoding)
            try c.encode(temporal_position_encoding_max_len, forKey: .temporal_position_encoding_max_len)
            try c.encode(temporal_attention_dim_div, forKey: .temporal_attention_dim_div)
            try c.encode(zero_initialize, forKey: .zero_initialize)
            try c.encode(skip_ref_image, forKey: .skip_ref_image)
            try c.encode(cond_ref_image, forKey: .cond_ref_image)
        }

        public func validate() throws {
            for t in attention_block_types { _ = try VersatileAttention.BlockType(parsing: t) }
            if attention_block_types.contains(where: { $0.hasSuffix("_Cross") }) && cross_attention_dim == nil {
                throw TorchError("VanillaTemporalModule: a *_Cross attention block needs cross_attention_dim")
            }
            if skip_ref_image && cond_ref_image {
                throw TorchError("VanillaTemporalModule: skip_ref_image and cond_ref_image are exclusive")
            }
            guard num_attention_heads > 0, temporal_attention_dim_div > 0, num_transformer_block >= 0,
                  temporal_position_encoding_max_len > 0 else {
                throw TorchError("VanillaTemporalModule: heads, dim div and max_len must be positive")
            }
        }

        /// True when any block cross-attends (then the forward needs motion tokens).
        public var hasCrossAttention: Bool { attention_block_types.contains { $0.hasSuffix("_Cross") } }
    }

    public let temporal_transformer: TemporalTransformer3DModel
    public let config: Config
    public let inChannels: Int

    /// `inChannels` overrides `config.in_channels` (the UNet passes each stage's width).
    /// `normNumGroups` is the reference's hard-coded 32; only tiny test models change it.
    public init(_ config: Config, inChannels: Int? = nil, normNumGroups: Int = 32) throws {
        try config.validate()
        guard let c = inChannels ?? config.in_channels else {
            throw TorchError("VanillaTemporalModule: in_channels is neither in the config nor given")
        }
        let headDim = c / config.num_attention_heads / config.temporal_attention_dim_div
        guard headDim > 0 else {
            throw TorchError("VanillaTemporalModule: in_channels \(c) too small for \(config.num_attention_heads) heads")
        }
        self.config = config
        self.inChannels = c
        temporal_transformer = try TemporalTransformer3DModel(
            inChannels: c, heads: config.num_attention_heads, headDim: headDim, layers: config.num_transformer_block,
            blockTypes: config.attention_block_types.map { try VersatileAttention.BlockType(parsing: $0) },
            normNumGroups: normNumGroups, crossAttentionDim: config.cross_attention_dim,
            positionEncoding: config.temporal_position_encoding,
            positionEncodingMaxLen: config.temporal_position_encoding_max_len)
        super.init()
        if config.zero_initialize && ParameterInit.mode != .uninitialized {
            try Torch.noGrad {
                try temporal_transformer.proj_out.weight.zero_()
                try temporal_transformer.proj_out.bias?.zero_()
            }
        }
    }

    /// hidden: (b, c, f, h, w). motionTokens: (b, f, n, d) — one token set per frame — or already
    /// flattened to (b·f, n, d); required when the module has a `*_Cross` block, ignored otherwise
    /// (the reference passes nothing to self-attention blocks). Returns (b, c, f, h, w).
    public func callAsFunction(hidden: Tensor, motionTokens: Tensor? = nil) throws -> Tensor {
        guard hidden.dim == 5 else {
            throw TorchError("VanillaTemporalModule: hidden states must be (b, c, f, h, w), got \(hidden.shape)")
        }
        if config.skip_ref_image {
            let f = hidden.shape[2]
            let out = try temporal_transformer(hidden.narrow(2, start: 0, length: f - 1), context: motionTokens)
            return try Tensor.cat([out, hidden.narrow(2, start: f - 1, length: 1)], dim: 2)
        }
        let out = try temporal_transformer(hidden, context: motionTokens)
        if config.cond_ref_image {
            let f = hidden.shape[2]
            return try Tensor.cat([out.narrow(2, start: 0, length: f - 1), hidden.narrow(2, start: f - 1, length: 1)],
                                  dim: 2)
        }
        return out
    }
}

/// TemporalTransformer3DModel: GroupNorm → proj_in → blocks → proj_out, residual, per frame.
public final class TemporalTransformer3DModel: Module {
    public let norm: GroupNorm
    public let proj_in: Linear
    public let transformer_blocks: [TemporalTransformerBlock]
    public let proj_out: Linear

    public init(inChannels: Int, heads: Int, headDim: Int, layers: Int, blockTypes: [VersatileAttention.BlockType],
                normNumGroups: Int = 32, crossAttentionDim: Int?, positionEncoding: Bool,
                positionEncodingMaxLen: Int) throws {
        let inner = heads * headDim
        norm = try GroupNorm(numGroups: normNumGroups, numChannels: inChannels, eps: 1e-6, affine: true)
        proj_in = try Linear(inChannels, inner)
        transformer_blocks = try (0..<layers).map { _ in
            try TemporalTransformerBlock(dim: inner, heads: heads, headDim: headDim, blockTypes: blockTypes,
                                         crossAttentionDim: crossAttentionDim, positionEncoding: positionEncoding,
                                         positionEncodingMaxLen: positionEncodingMaxLen)
        }
        proj_out = try Linear(inner, inChannels)
    }

    /// hidden: (b, c, f, h, w); context: (b, f, n, d), (b·f, n, d) or nil.
    public func callAsFunction(_ hidden: Tensor, context: Tensor? = nil) throws -> Tensor {
        let s = hidden.shape
        let (b, c, f, h, w) = (s[0], s[1], s[2], s[3], s[4])
        // b c f h w -> (b f) c h w
        let residual = try hidden.permute([0, 2, 1, 3, 4]).reshape([b * f, c, h, w])
        var ctx = context
        if let e = context, e.dim == 4 {
            guard e.shape[1] == f else {
                throw TorchError("TemporalTransformer3DModel: context has \(e.shape[1]) frames, hidden states \(f)")
            }
            ctx = try e.reshape([e.shape[0] * f, e.shape[2], e.shape[3]])
        }
        var x = try norm(residual)
        let inner = x.shape[1]
        x = try proj_in(x.permute([0, 2, 3, 1]).reshape([b * f, h * w, inner]))
        for block in transformer_blocks {
            x = try block(x, context: ctx, videoLength: f)
        }
        x = try proj_out(x)
        // contiguous() as in the reference: without it the sum takes the permuted (channels-last)
        // strides and every later GroupNorm and conv of the frame copies or takes a slower kernel.
        x = try x.reshape([b * f, h, w, c]).permute([0, 3, 1, 2]).contiguous() + residual
        // (b f) c h w -> b c f h w
        return try x.reshape([b, f, c, h, w]).permute([0, 2, 1, 3, 4])
    }
}

/// TemporalTransformerBlock: pre-norm attention blocks, then a pre-norm GEGLU feed-forward.
public final class TemporalTransformerBlock: Module {
    public let attention_blocks: [VersatileAttention]
    public let norms: [LayerNorm]
    public let ff: FeedForward
    public let ff_norm: LayerNorm

    public init(dim: Int, heads: Int, headDim: Int, blockTypes: [VersatileAttention.BlockType],
                crossAttentionDim: Int?, positionEncoding: Bool, positionEncodingMaxLen: Int) throws {
        attention_blocks = try blockTypes.map {
            try VersatileAttention(type: $0, queryDim: dim, heads: heads, headDim: headDim,
                                   crossAttentionDim: $0.isCross ? crossAttentionDim : nil,
                                   positionEncoding: positionEncoding, positionEncodingMaxLen: positionEncodingMaxLen)
        }
        norms = try blockTypes.map { _ in try LayerNorm(dim) }
        ff = try FeedForward(dim: dim, activation: "geglu")
        ff_norm = try LayerNorm(dim)
    }

    /// hidden: (b·f, h·w, dim).
    public func callAsFunction(_ hidden: Tensor, context: Tensor?, videoLength: Int) throws -> Tensor {
        var h = hidden
        for (attn, norm) in zip(attention_blocks, norms) {
            h = try attn(norm(h), context: attn.type.isCross ? context : nil, videoLength: videoLength) + h
        }
        return try ff(ff_norm(h)) + h
    }
}

/// PositionalEncoding: the fixed sinusoidal table pe[0, pos, 2i] = sin(pos·div_i),
/// pe[0, pos, 2i+1] = cos(pos·div_i), div_i = exp(−2i·ln(10000)/d). A persistent buffer, as in
/// the reference (the released temporal_module checkpoint carries it).
public final class TemporalPositionalEncoding: Module {
    @Buffer public var pe: Tensor

    public init(dim: Int, maxLen: Int) throws {
        pe = try Self.table(dim: dim, maxLen: maxLen)
    }

    static func table(dim: Int, maxLen: Int) throws -> Tensor {
        let position = try Tensor.arange(0, Double(maxLen), dtype: .float32).unsqueeze(1)
        let div = try (Tensor.arange(0, Double(dim), step: 2, dtype: .float32) * (-Foundation.log(10000.0) / Double(dim))).exp()
        let angles = try position * div.unsqueeze(0)  // (maxLen, ceil(dim/2))
        let table = try Tensor.zeros([maxLen, dim])
        try table.slice(1, 0, nil, step: 2).copy_(angles.sin())
        try table.slice(1, 1, nil, step: 2).copy_(angles.cos().narrow(1, start: 0, length: dim / 2))
        return try table.unsqueeze(0)
    }

    /// x: (B, L, dim) → x + pe[:, :L].
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let len = x.shape[1], maxLen = pe.shape[1]
        guard len <= maxLen else {
            throw TorchError("PositionalEncoding: sequence of \(len) frames exceeds max_len \(maxLen)")
        }
        return try x + pe.narrow(1, start: 0, length: len)
    }
}

/// VersatileAttention: diffusers Attention (plain softmax attention, no bias on q/k/v) that runs
/// either over the tokens of each frame (Spatial) or over the frames of each location (Temporal).
public final class VersatileAttention: Module {
    public enum Mode: String, Sendable { case temporal = "Temporal", spatial = "Spatial" }

    /// An `attention_block_types` entry: `<Temporal|Spatial>_<Self|Cross>`.
    public struct BlockType: Sendable, Equatable {
        public var mode: Mode
        public var isCross: Bool

        public init(mode: Mode, isCross: Bool) {
            self.mode = mode
            self.isCross = isCross
        }

        public init(parsing s: String) throws {
            let parts = s.split(separator: "_", maxSplits: 1).map(String.init)
            guard parts.count == 2, let mode = Mode(rawValue: parts[0]), parts[1] == "Self" || parts[1] == "Cross" else {
                throw TorchError("attention block type '\(s)' is not one of Temporal_Self, Temporal_Cross, "
                                 + "Spatial_Self, Spatial_Cross")
            }
            self.init(mode: mode, isCross: parts[1] == "Cross")
        }
    }

    public let to_q: Linear
    public let to_k: Linear
    public let to_v: Linear
    public let to_out: [Module]  // [Linear, Dropout] as nn.ModuleList
    public let pos_encoder: TemporalPositionalEncoding?
    public let type: BlockType
    public let heads: Int
    public let headDim: Int

    public init(type: BlockType, queryDim: Int, heads: Int, headDim: Int, crossAttentionDim: Int?,
                positionEncoding: Bool, positionEncodingMaxLen: Int, dropout: Double = 0) throws {
        let inner = heads * headDim
        self.type = type
        self.heads = heads
        self.headDim = headDim
        to_q = try Linear(queryDim, inner, bias: false)
        to_k = try Linear(crossAttentionDim ?? queryDim, inner, bias: false)
        to_v = try Linear(crossAttentionDim ?? queryDim, inner, bias: false)
        to_out = [try Linear(inner, queryDim), Dropout(dropout)]
        pos_encoder = positionEncoding && type.mode == .temporal
            ? try TemporalPositionalEncoding(dim: queryDim, maxLen: positionEncodingMaxLen) : nil
    }

    /// hidden: (b·f, d, c) with d = h·w; context: (B', n, cross dim) for cross blocks.
    public func callAsFunction(_ hidden: Tensor, context: Tensor?, videoLength f: Int) throws -> Tensor {
        var x = hidden
        var ctx = context
        let d = hidden.shape[1], c = hidden.shape[2]
        let b = hidden.shape[0] / f
        if type.mode == .temporal {
            // (b f) d c -> (b d) f c
            x = try x.reshape([b, f, d, c]).permute([0, 2, 1, 3]).reshape([b * d, f, c])
            if let e = ctx, e.shape[0] != x.shape[0] {
                ctx = try e.repeatInterleave(d, dim: 0)  // b n c -> (b d) n c
            }
        }
        if type.isCross {
            guard let e = ctx else { throw TorchError("VersatileAttention: a cross-attention block needs context tokens") }
            guard e.shape[0] == x.shape[0] else {
                throw TorchError("VersatileAttention: context batch \(e.shape[0]) does not match \(x.shape[0]) queries")
            }
        }
        if let pos = pos_encoder { x = try pos(x) }
        let kv = type.isCross ? ctx! : x
        var out = try attend(q: to_q(x), k: to_k(kv), v: to_v(kv))
        out = try (to_out[1] as! Dropout)((to_out[0] as! Linear)(out))
        if type.mode == .temporal {
            // (b d) f c -> (b f) d c
            out = try out.reshape([b, d, f, c]).permute([0, 2, 1, 3]).reshape([b * f, d, c])
        }
        return out
    }

    /// softmax(q kᵀ / √head_dim) v per head; q: (B, Lq, inner), k/v: (B, Lk, inner).
    func attend(q: Tensor, k: Tensor, v: Tensor) throws -> Tensor {
        let bq = q.shape[0], lq = q.shape[1], lk = k.shape[1]
        let qh = try q.reshape([bq, lq, heads, headDim]).transpose(1, 2)
        let kh = try k.reshape([bq, lk, heads, headDim]).transpose(1, 2)
        let vh = try v.reshape([bq, lk, heads, headDim]).transpose(1, 2)
        let o = try F.scaledDotProductAttention(qh, kh, vh, scale: 1.0 / Double(headDim).squareRoot())
        return try o.transpose(1, 2).reshape([bq, lq, heads * headDim])
    }
}
