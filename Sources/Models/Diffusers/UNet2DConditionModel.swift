// UNet2DConditionModel.swift — mirrors diffusers.models.unets.unet_2d_condition.UNet2DConditionModel
// (diffusers 0.27) built from a diffusers `config.json`: conv_in → time_proj/time_embedding →
// down_blocks → mid_block → up_blocks (skips concatenated) → conv_norm_out → SiLU → conv_out.
// PersonaLive hooks: a residual added right after conv_in (the pose guider's features), optional
// output layers (its reference UNet has no conv_norm_out/conv_out), the transformer blocks in
// execution order (reference attention) and a recorder seeing each top-level module's output.
import NN
import Torch

/// A config value diffusers accepts either once for all blocks or as one entry per block.
public enum OneOrMany<T: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    case one(T)
    case many([T])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let list = try? c.decode([T].self) { self = .many(list) } else { self = .one(try c.decode(T.self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .one(let v): try c.encode(v)
        case .many(let vs): try c.encode(vs)
        }
    }

    /// One value per block; a list must have exactly `count` entries.
    public func perBlock(_ count: Int, key: String) throws -> [T] {
        switch self {
        case .one(let v): return Array(repeating: v, count: count)
        case .many(let vs):
            guard vs.count == count else {
                throw TorchError("UNet2DConditionModel: \(key) has \(vs.count) entries but there are \(count) down blocks")
            }
            return vs
        }
    }
}

public final class UNet2DConditionModel: Module {
    /// The diffusers config (keys as in config.json). Every constructor argument of diffusers 0.27
    /// is accepted; ones this port does not implement are accepted only at their default value
    /// (anything else is an error naming the key), so a config never silently means something else.
    public struct Config: Codable, Sendable, Equatable {
        public var sample_size: OneOrMany<Int>?
        public var in_channels = 4
        public var out_channels = 4
        public var center_input_sample = false
        public var flip_sin_to_cos = true
        public var freq_shift: Double = 0
        public var down_block_types = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
        /// nil (JSON null) skips the mid block, as diffusers does.
        public var mid_block_type: String? = "UNetMidBlock2DCrossAttn"
        public var up_block_types = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
        public var only_cross_attention: OneOrMany<Bool> = .one(false)
        public var block_out_channels = [320, 640, 1280, 1280]
        public var layers_per_block: OneOrMany<Int> = .one(2)
        public var downsample_padding = 1
        public var mid_block_scale_factor: Double = 1
        public var dropout: Double = 0
        public var act_fn = "silu"
        public var norm_num_groups = 32
        public var norm_eps: Double = 1e-5
        public var cross_attention_dim: OneOrMany<Int> = .one(1280)
        public var transformer_layers_per_block: OneOrMany<Int> = .one(1)
        /// SD-1.x naming quirk: when num_attention_heads is absent this is the NUMBER OF HEADS.
        public var attention_head_dim: OneOrMany<Int> = .one(8)
        public var use_linear_projection = false
        public var upcast_attention = false
        public var resnet_time_scale_shift = "default"
        /// Accepted and, as in diffusers 0.27, without effect on the block types supported here.
        public var resnet_skip_time_act = false
        public var resnet_out_scale_factor: Double = 1
        public var time_embedding_dim: Int?
        public var time_embedding_act_fn: String?
        public var timestep_post_act: String?
        public var time_cond_proj_dim: Int?
        public var conv_in_kernel = 3
        public var conv_out_kernel = 3
        /// Only UNetMidBlock2DSimpleCrossAttn reads it; accepted for configs that carry it.
        public var mid_block_only_cross_attention: Bool?

        /// diffusers' defaults (the SD-1.x text-to-image layout with cross_attention_dim 1280).
        public init() {}

        /// The lambdalabs/sd-image-variations-diffusers UNet (SD-1.x, CLIP image embedding 768):
        /// the denoising and reference UNets of PersonaLive start from it.
        public static var sd15ImageVariations: Config {
            var c = Config()
            c.sample_size = .one(64)
            c.cross_attention_dim = .one(768)
            return c
        }

        enum K: String, CodingKey, CaseIterable {
            case sample_size, in_channels, out_channels, center_input_sample, flip_sin_to_cos, freq_shift,
                 down_block_types, mid_block_type, up_block_types, only_cross_attention, block_out_channels,
                 layers_per_block, downsample_padding, mid_block_scale_factor, dropout, act_fn, norm_num_groups,
                 norm_eps, cross_attention_dim, transformer_layers_per_block, reverse_transformer_layers_per_block,
                 encoder_hid_dim, encoder_hid_dim_type, attention_head_dim, num_attention_heads,
                 dual_cross_attention, use_linear_projection, class_embed_type, addition_embed_type,
                 addition_time_embed_dim, num_class_embeds, upcast_attention, resnet_time_scale_shift,
                 resnet_skip_time_act, resnet_out_scale_factor, time_embedding_type, time_embedding_dim,
                 time_embedding_act_fn, timestep_post_act, time_cond_proj_dim, conv_in_kernel, conv_out_kernel,
                 projection_class_embeddings_input_dim, attention_type, class_embeddings_concat,
                 mid_block_only_cross_attention, cross_attention_norm, addition_embed_type_num_heads
        }

        enum EncodedKeys: String, CodingKey {
            case sample_size, in_channels, out_channels, center_input_sample, flip_sin_to_cos, freq_shift,
                 down_block_types, mid_block_type, up_block_types, only_cross_attention, block_out_channels,
                 layers_per_block, downsample_padding, mid_block_scale_factor, dropout, act_fn, norm_num_groups,
                 norm_eps, cross_attention_dim, transformer_layers_per_block, attention_head_dim,
                 use_linear_projection, upcast_attention, resnet_time_scale_shift, resnet_skip_time_act,
                 resnet_out_scale_factor, time_embedding_dim, time_embedding_act_fn, timestep_post_act,
                 time_cond_proj_dim, conv_in_kernel, conv_out_kernel, mid_block_only_cross_attention
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: K.self)
            let d = Config()
            sample_size = try c.value(.sample_size, default: d.sample_size)
            in_channels = try c.value(.in_channels, default: d.in_channels)
            out_channels = try c.value(.out_channels, default: d.out_channels)
            center_input_sample = try c.value(.center_input_sample, default: d.center_input_sample)
            flip_sin_to_cos = try c.value(.flip_sin_to_cos, default: d.flip_sin_to_cos)
            freq_shift = try c.value(.freq_shift, default: d.freq_shift)
            down_block_types = try c.value(.down_block_types, default: d.down_block_types)
            mid_block_type = try c.value(.mid_block_type, default: d.mid_block_type)
            up_block_types = try c.value(.up_block_types, default: d.up_block_types)
            only_cross_attention = try c.value(.only_cross_attention, default: d.only_cross_attention)
            block_out_channels = try c.value(.block_out_channels, default: d.block_out_channels)
            layers_per_block = try c.value(.layers_per_block, default: d.layers_per_block)
            downsample_padding = try c.value(.downsample_padding, default: d.downsample_padding)
            mid_block_scale_factor = try c.value(.mid_block_scale_factor, default: d.mid_block_scale_factor)
            dropout = try c.value(.dropout, default: d.dropout)
            act_fn = try c.value(.act_fn, default: d.act_fn)
            guard let groups: Int = try c.value(.norm_num_groups, default: Int?(d.norm_num_groups)) else {
                throw TorchError("UNet2DConditionModel: norm_num_groups null is not supported (the SD blocks need GroupNorm)")
            }
            norm_num_groups = groups
            norm_eps = try c.value(.norm_eps, default: d.norm_eps)
            cross_attention_dim = try c.value(.cross_attention_dim, default: d.cross_attention_dim)
            transformer_layers_per_block = try c.value(.transformer_layers_per_block, default: d.transformer_layers_per_block)
            attention_head_dim = try c.value(.attention_head_dim, default: d.attention_head_dim)
            use_linear_projection = try c.value(.use_linear_projection, default: d.use_linear_projection)
            upcast_attention = try c.value(.upcast_attention, default: d.upcast_attention)
            resnet_time_scale_shift = try c.value(.resnet_time_scale_shift, default: d.resnet_time_scale_shift)
            resnet_skip_time_act = try c.value(.resnet_skip_time_act, default: d.resnet_skip_time_act)
            resnet_out_scale_factor = try c.value(.resnet_out_scale_factor, default: d.resnet_out_scale_factor)
            time_embedding_dim = try c.value(.time_embedding_dim, default: d.time_embedding_dim)
            time_embedding_act_fn = try c.value(.time_embedding_act_fn, default: d.time_embedding_act_fn)
            timestep_post_act = try c.value(.timestep_post_act, default: d.timestep_post_act)
            time_cond_proj_dim = try c.value(.time_cond_proj_dim, default: d.time_cond_proj_dim)
            conv_in_kernel = try c.value(.conv_in_kernel, default: d.conv_in_kernel)
            conv_out_kernel = try c.value(.conv_out_kernel, default: d.conv_out_kernel)
            mid_block_only_cross_attention = try c.value(.mid_block_only_cross_attention, default: nil)

            // diffusers 0.27 itself refuses num_attention_heads (its naming issue #2011).
            if c.contains(.num_attention_heads), try !c.decodeNil(forKey: .num_attention_heads) {
                throw TorchError("UNet2DConditionModel: num_attention_heads must be null (diffusers 0.27 refuses it; "
                                 + "SD-1.x configs give the number of heads as attention_head_dim)")
            }
            // Features of other UNet families: accepted only at their "off" value.
            func requireNull(_ key: K, _ what: String) throws {
                if c.contains(key), try !c.decodeNil(forKey: key) {
                    throw TorchError("UNet2DConditionModel: \(key.rawValue) is not supported (\(what)); it must be null or absent")
                }
            }
            try requireNull(.reverse_transformer_layers_per_block, "asymmetric SDXL-style transformer depths")
            try requireNull(.encoder_hid_dim, "encoder_hid_proj")
            try requireNull(.encoder_hid_dim_type, "encoder_hid_proj")
            try requireNull(.class_embed_type, "class embeddings")
            try requireNull(.num_class_embeds, "class embeddings")
            try requireNull(.projection_class_embeddings_input_dim, "class embeddings")
            try requireNull(.addition_embed_type, "added embeddings")
            try requireNull(.addition_time_embed_dim, "added embeddings")
            try requireNull(.cross_attention_norm, "cross-attention norm")
            func requireValue<V: Decodable & Equatable>(_ key: K, _ expected: V, _ what: String) throws {
                if let v: V = try c.value(key, default: nil), v != expected {
                    throw TorchError("UNet2DConditionModel: \(key.rawValue) = \(v) is not supported (\(what)); only \(expected)")
                }
            }
            try requireValue(.dual_cross_attention, false, "DualTransformer2DModel")
            try requireValue(.time_embedding_type, "positional", "Fourier time embedding")
            try requireValue(.attention_type, "default", "gated attention")
            try requireValue(.class_embeddings_concat, false, "class embeddings")
            // Only read by added text-time embeddings, which are refused above.
            _ = try c.value(.addition_embed_type_num_heads, default: Int?.none)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: EncodedKeys.self)
            try c.encodeIfPresent(sample_size, forKey: .sample_size)
            try c.encode(in_channels, forKey: .in_channels)
            try c.encode(out_channels, forKey: .out_channels)
            try c.encode(center_input_sample, forKey: .center_input_sample)
            try c.encode(flip_sin_to_cos, forKey: .flip_sin_to_cos)
            try c.encode(freq_shift, forKey: .freq_shift)
            try c.encode(down_block_types, forKey: .down_block_types)
            try c.encode(mid_block_type, forKey: .mid_block_type)
            try c.encode(up_block_types, forKey: .up_block_types)
            try c.encode(only_cross_attention, forKey: .only_cross_attention)
            try c.encode(block_out_channels, forKey: .block_out_channels)
            try c.encode(layers_per_block, forKey: .layers_per_block)
            try c.encode(downsample_padding, forKey: .downsample_padding)
            try c.encode(mid_block_scale_factor, forKey: .mid_block_scale_factor)
            try c.encode(dropout, forKey: .dropout)
            try c.encode(act_fn, forKey: .act_fn)
            try c.encode(norm_num_groups, forKey: .norm_num_groups)
            try c.encode(norm_eps, forKey: .norm_eps)
            try c.encode(cross_attention_dim, forKey: .cross_attention_dim)
            try c.encode(transformer_layers_per_block, forKey: .transformer_layers_per_block)
            try c.encode(attention_head_dim, forKey: .attention_head_dim)
            try c.encode(use_linear_projection, forKey: .use_linear_projection)
            try c.encode(upcast_attention, forKey: .upcast_attention)
            try c.encode(resnet_time_scale_shift, forKey: .resnet_time_scale_shift)
            try c.encode(resnet_skip_time_act, forKey: .resnet_skip_time_act)
            try c.encode(resnet_out_scale_factor, forKey: .resnet_out_scale_factor)
            try c.encodeIfPresent(time_embedding_dim, forKey: .time_embedding_dim)
            try c.encodeIfPresent(time_embedding_act_fn, forKey: .time_embedding_act_fn)
            try c.encodeIfPresent(timestep_post_act, forKey: .timestep_post_act)
            try c.encodeIfPresent(time_cond_proj_dim, forKey: .time_cond_proj_dim)
            try c.encode(conv_in_kernel, forKey: .conv_in_kernel)
            try c.encode(conv_out_kernel, forKey: .conv_out_kernel)
            try c.encodeIfPresent(mid_block_only_cross_attention, forKey: .mid_block_only_cross_attention)
        }

        /// Heads per down block: diffusers' `num_attention_heads or attention_head_dim`.
        public func numAttentionHeads() throws -> [Int] {
            try attention_head_dim.perBlock(down_block_types.count, key: "attention_head_dim")
        }

        /// Width of the time embedding fed to every resnet.
        public var timeEmbedDim: Int { time_embedding_dim ?? block_out_channels[0] * 4 }
    }

    /// Sees each top-level module's output during a forward: "time_proj", "time_embedding",
    /// "conv_in" (before the residual hook), "down_blocks.<i>" (the hidden states, not the skips),
    /// "mid_block", "up_blocks.<i>", "conv_norm_out", "conv_out" — the names of diffusers' modules.
    public typealias Recorder = (_ name: String, _ output: Tensor) throws -> Void

    // Declaration order = PyTorch registration order, so stateDict() lists keys as torch does.
    public let conv_in: Conv2d
    public let time_proj: Timesteps
    public let time_embedding: TimestepEmbedding
    public let down_blocks: [Module]
    public let up_blocks: [Module]
    public let mid_block: Module?
    /// nil when built without output layers (PersonaLive's reference UNet) — then the forward
    /// returns the last up block's features.
    public let conv_norm_out: GroupNorm?
    public let conv_out: Conv2d?
    public let config: Config

    let timeEmbedAct: DiffusersActivation?
    let convAct: DiffusersActivation

    /// `withOutputLayers: false` omits conv_norm_out and conv_out (their keys too).
    public init(_ config: Config, withOutputLayers: Bool = true) throws {
        self.config = config
        let nBlocks = config.down_block_types.count
        let channels = config.block_out_channels
        guard nBlocks > 0, config.up_block_types.count == nBlocks, channels.count == nBlocks else {
            throw TorchError("UNet2DConditionModel: down_block_types (\(nBlocks)), up_block_types "
                             + "(\(config.up_block_types.count)) and block_out_channels (\(channels.count)) must have the same length")
        }
        let heads = try config.numAttentionHeads()
        let crossDims = try config.cross_attention_dim.perBlock(nBlocks, key: "cross_attention_dim")
        let layers = try config.layers_per_block.perBlock(nBlocks, key: "layers_per_block")
        let tLayers = try config.transformer_layers_per_block.perBlock(nBlocks, key: "transformer_layers_per_block")
        let onlyCross = try config.only_cross_attention.perBlock(nBlocks, key: "only_cross_attention")

        conv_in = try Conv2d(config.in_channels, channels[0], kernelSize: config.conv_in_kernel,
                             padding: (config.conv_in_kernel - 1) / 2)
        time_proj = Timesteps(numChannels: channels[0], flipSinToCos: config.flip_sin_to_cos,
                              downscaleFreqShift: config.freq_shift)
        let tembDim = config.timeEmbedDim
        time_embedding = try TimestepEmbedding(inChannels: channels[0], timeEmbedDim: tembDim, act: config.act_fn,
                                               postAct: config.timestep_post_act, condProjDim: config.time_cond_proj_dim)
        timeEmbedAct = try config.time_embedding_act_fn.map { try DiffusersActivation(named: $0) }
        convAct = try DiffusersActivation(named: config.act_fn)

        func settings(heads h: Int, crossDim: Int, transformerLayers: Int, onlyCross oc: Bool) -> UNetBlockSettings {
            UNetBlockSettings(tembChannels: tembDim, resnetEps: config.norm_eps, resnetGroups: config.norm_num_groups,
                              resnetActFn: config.act_fn, resnetTimeScaleShift: config.resnet_time_scale_shift,
                              dropout: config.dropout, numAttentionHeads: h, crossAttentionDim: crossDim,
                              transformerLayers: transformerLayers, useLinearProjection: config.use_linear_projection,
                              onlyCrossAttention: oc, upcastAttention: config.upcast_attention)
        }

        var downs: [Module] = []
        var outC = channels[0]
        for (i, type) in config.down_block_types.enumerated() {
            let inC = outC
            outC = channels[i]
            let s = settings(heads: heads[i], crossDim: crossDims[i], transformerLayers: tLayers[i], onlyCross: onlyCross[i])
            let last = i == nBlocks - 1
            switch type {
            case "CrossAttnDownBlock2D":
                downs.append(try CrossAttnDownBlock2D(inChannels: inC, outChannels: outC, numLayers: layers[i],
                                                      addDownsample: !last, downsamplePadding: config.downsample_padding,
                                                      settings: s))
            case "DownBlock2D":
                downs.append(try DownBlock2D(inChannels: inC, outChannels: outC, numLayers: layers[i],
                                             addDownsample: !last, downsamplePadding: config.downsample_padding,
                                             settings: s))
            default:
                throw TorchError("UNet2DConditionModel: down block type '\(type)' is not supported (CrossAttnDownBlock2D, DownBlock2D)")
            }
        }
        down_blocks = downs

        switch config.mid_block_type {
        case nil: mid_block = nil
        case "UNetMidBlock2DCrossAttn":
            let s = settings(heads: heads[nBlocks - 1], crossDim: crossDims[nBlocks - 1],
                             transformerLayers: tLayers[nBlocks - 1], onlyCross: false)
            mid_block = try UNetMidBlock2DCrossAttn(inChannels: channels[nBlocks - 1],
                                                    outputScaleFactor: config.mid_block_scale_factor, settings: s)
        case let other?:
            throw TorchError("UNet2DConditionModel: mid block type '\(other)' is not supported (UNetMidBlock2DCrossAttn or null)")
        }

        let rChannels = Array(channels.reversed()), rHeads = Array(heads.reversed())
        let rLayers = Array(layers.reversed()), rCross = Array(crossDims.reversed())
        let rTLayers = Array(tLayers.reversed()), rOnlyCross = Array(onlyCross.reversed())
        var ups: [Module] = []
        outC = rChannels[0]
        for (i, type) in config.up_block_types.enumerated() {
            let prevC = outC
            outC = rChannels[i]
            let inC = rChannels[min(i + 1, nBlocks - 1)]
            let s = settings(heads: rHeads[i], crossDim: rCross[i], transformerLayers: rTLayers[i], onlyCross: rOnlyCross[i])
            let last = i == nBlocks - 1
            switch type {
            case "CrossAttnUpBlock2D":
                ups.append(try CrossAttnUpBlock2D(inChannels: inC, prevOutputChannel: prevC, outChannels: outC,
                                                  numLayers: rLayers[i] + 1, addUpsample: !last, settings: s))
            case "UpBlock2D":
                ups.append(try UpBlock2D(inChannels: inC, prevOutputChannel: prevC, outChannels: outC,
                                         numLayers: rLayers[i] + 1, addUpsample: !last, settings: s))
            default:
                throw TorchError("UNet2DConditionModel: up block type '\(type)' is not supported (UpBlock2D, CrossAttnUpBlock2D)")
            }
        }
        up_blocks = ups

        if withOutputLayers {
            conv_norm_out = try GroupNorm(numGroups: config.norm_num_groups, numChannels: channels[0], eps: config.norm_eps)
            conv_out = try Conv2d(channels[0], config.out_channels, kernelSize: config.conv_out_kernel,
                                  padding: (config.conv_out_kernel - 1) / 2)
        } else {
            conv_norm_out = nil
            conv_out = nil
        }
    }

    // MARK: typed views

    public var downBlocks: [any UNetDownBlock] { down_blocks.map { $0 as! any UNetDownBlock } }
    public var upBlocks: [any UNetUpBlock] { up_blocks.map { $0 as! any UNetUpBlock } }
    public var midBlock: (any UNetMidBlock)? { mid_block.map { $0 as! any UNetMidBlock } }

    /// Every Transformer2DModel with its key path, in execution order: down blocks, mid, up blocks.
    public var namedAttentions: [(String, Transformer2DModel)] {
        var out: [(String, Transformer2DModel)] = []
        for (i, b) in downBlocks.enumerated() {
            out += b.attentions.enumerated().map { ("down_blocks.\(i).attentions.\($0.offset)", $0.element) }
        }
        if let m = midBlock { out += m.attentions.enumerated().map { ("mid_block.attentions.\($0.offset)", $0.element) } }
        for (i, b) in upBlocks.enumerated() {
            out += b.attentions.enumerated().map { ("up_blocks.\(i).attentions.\($0.offset)", $0.element) }
        }
        return out
    }

    /// Every BasicTransformerBlock with its key path (e.g. "down_blocks.0.attentions.1.transformer_blocks.0"),
    /// in execution order. Set their `selfAttentionHook` to read or extend self-attention.
    public var namedTransformerBlocks: [(String, BasicTransformerBlock)] {
        namedAttentions.flatMap { name, t in
            t.transformer_blocks.enumerated().map { ("\(name).transformer_blocks.\($0.offset)", $0.element) }
        }
    }

    /// Every BasicTransformerBlock in execution order (down blocks, mid block, up blocks).
    public var transformerBlocks: [BasicTransformerBlock] { namedTransformerBlocks.map(\.1) }

    // MARK: forward

    /// sample: (B, in_channels, H, W). timestep: 0-dim or 1-element (broadcast to the batch) or
    /// (B,) per-sample, any numeric dtype. encoderHiddenStates: (B, S, cross_attention_dim).
    /// convInResidual: added to conv_in's output (broadcasting; PersonaLive's pose features).
    /// timestepCond: input of time_embedding.cond_proj (configs with time_cond_proj_dim).
    /// Returns (B, out_channels, H, W), or the last up block's (B, block_out_channels[0], H, W)
    /// features when built without output layers.
    public func callAsFunction(_ sample: Tensor, timestep: Tensor, encoderHiddenStates: Tensor?,
                               convInResidual: Tensor? = nil, timestepCond: Tensor? = nil,
                               recorder: Recorder? = nil) throws -> Tensor {
        guard sample.dim == 4, sample.shape[1] == config.in_channels else {
            throw TorchError("UNet2DConditionModel: sample must be (B, \(config.in_channels), H, W), got \(sample.shape)")
        }
        let batch = sample.shape[0]
        // Skips must meet upsampled maps of equal size; when H or W is not a multiple of
        // 2^(upsamplers) each upsampler is told the size of the skip it will meet.
        let numUpsamplers = upBlocks.filter { !$0.upsamplers.isEmpty }.count
        let factor = 1 << numUpsamplers
        let forwardUpsampleSize = sample.shape[2...].contains { $0 % factor != 0 }

        var x = config.center_input_sample ? try sample * 2 - 1 : sample

        // time
        var t = timestep
        if t.dim == 0 { t = try t.reshape([1]) }
        guard t.dim == 1, t.shape[0] == 1 || t.shape[0] == batch else {
            throw TorchError("UNet2DConditionModel: timestep must be a scalar, 1 element or (\(batch),), got \(timestep.shape)")
        }
        if t.device != sample.device { t = try t.to(sample.device) }
        t = try t.expand([batch])
        var tEmb = try time_proj(t)
        // time_proj always yields float32; the embedding runs in the model's dtype.
        if tEmb.dtype != sample.dtype { tEmb = try tEmb.to(sample.dtype) }
        try recorder?("time_proj", tEmb)
        var emb = try time_embedding(tEmb, condition: timestepCond)
        try recorder?("time_embedding", emb)
        if let timeEmbedAct { emb = try timeEmbedAct(emb) }

        // pre-process
        x = try conv_in(x)
        try recorder?("conv_in", x)
        if let convInResidual { x = try x + convInResidual }

        // down
        var skips: [Tensor] = [x]
        for (i, block) in downBlocks.enumerated() {
            let (h, res) = try block(x, temb: emb, context: encoderHiddenStates)
            x = h
            skips += res
            try recorder?("down_blocks.\(i)", x)
        }

        // mid
        if let midBlock {
            x = try midBlock(x, temb: emb, context: encoderHiddenStates)
            try recorder?("mid_block", x)
        }

        // up
        let ups = upBlocks
        for (i, block) in ups.enumerated() {
            let n = block.resnets.count
            guard skips.count >= n else {
                throw TorchError("UNet2DConditionModel: up_blocks.\(i) needs \(n) skip tensors, \(skips.count) left")
            }
            let res = Array(skips.suffix(n))
            skips.removeLast(n)
            var upsampleSize: (Int, Int)?
            if i < ups.count - 1, forwardUpsampleSize, let next = skips.last {
                upsampleSize = (next.shape[2], next.shape[3])
            }
            x = try block(x, skips: res, temb: emb, context: encoderHiddenStates, upsampleSize: upsampleSize)
            try recorder?("up_blocks.\(i)", x)
        }

        // post-process
        if let conv_norm_out {
            x = try conv_norm_out(x)
            try recorder?("conv_norm_out", x)
            x = try convAct(x)
        }
        if let conv_out {
            x = try conv_out(x)
            try recorder?("conv_out", x)
        }
        return x
    }

    /// The same with one timestep for the whole batch (e.g. 0 for PersonaLive's reference pass).
    public func callAsFunction(_ sample: Tensor, timestep: Double, encoderHiddenStates: Tensor?,
                               convInResidual: Tensor? = nil, timestepCond: Tensor? = nil,
                               recorder: Recorder? = nil) throws -> Tensor {
        try self(sample, timestep: Tensor.scalar(timestep, dtype: .float32, device: sample.device),
                 encoderHiddenStates: encoderHiddenStates, convInResidual: convInResidual,
                 timestepCond: timestepCond, recorder: recorder)
    }
}
