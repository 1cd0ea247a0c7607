// UNet3DConditionModel.swift — mirrors PersonaLive's src/models/unet_3d.py UNet3DConditionModel (the
// denoising UNet): the SD-1.x UNet inflated to video (per-frame conv / GroupNorm on (b, c, f, h, w)),
// per-frame timesteps, the pose guider's features added after conv_in, CLIP cross-attention in the
// spatial transformers, and after every resnet (+ transformer) a motion module (Spatial_Cross to the
// motion tokens) and a temporal module (Temporal_Self over frames). Also `from_pretrained_2d`:
// building it from a 2D UNet's weights plus optional AnimateDiff / X-NeMo-style temporal weights.
import Foundation
import NN
import Torch

public final class UNet3DConditionModel: Module {
    /// The reference constructor's keyword arguments, keys as in its config: the diffusers UNet
    /// arguments plus the `unet_additional_kwargs` of the PersonaLive configs, either flat (as the
    /// fixture cases give them) or nested under `unet_additional_kwargs` (as the manifests and
    /// from_pretrained_2d give them). Unknown keys are errors naming the key; arguments the
    /// reference accepts but PersonaLive never changes are accepted only at their default value.
    public struct Config: Codable, Sendable, Equatable {
        public var sample_size: OneOrMany<Int>?
        public var in_channels = 4
        public var out_channels = 4
        public var center_input_sample = false
        public var flip_sin_to_cos = true
        public var freq_shift: Double = 0
        public var down_block_types = ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"]
        public var mid_block_type = "UNetMidBlock3DCrossAttn"
        public var up_block_types = ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"]
        public var block_out_channels = [320, 640, 1280, 1280]
        public var layers_per_block = 2
        public var downsample_padding = 1
        public var mid_block_scale_factor: Double = 1
        public var act_fn = "silu"
        public var norm_num_groups = 32
        public var norm_eps: Double = 1e-5
        public var cross_attention_dim = 1280
        /// SD-1.x naming quirk: the NUMBER OF HEADS of each spatial transformer.
        public var attention_head_dim: OneOrMany<Int> = .one(8)
        public var use_linear_projection = false
        public var upcast_attention = false
        public var resnet_time_scale_shift = "default"

        // unet_additional_kwargs
        /// Per-frame GroupNorm in resnets and conv_norm_out (otherwise statistics span all frames).
        public var use_inflated_groupnorm = false
        public var use_motion_module = false
        public var use_temporal_module = false
        /// Stage "resolutions" (2^i down, 2^(3−i) up) that get motion / temporal modules.
        public var motion_module_resolutions = [1, 2, 4, 8]
        public var motion_module_mid_block = false
        public var motion_module_decoder_only = false
        public var motion_module_type: String?
        public var temporal_module_type: String?
        public var motion_module_kwargs = VanillaTemporalModule.Config()
        public var temporal_module_kwargs = VanillaTemporalModule.Config()
        /// Passed to diffusers' Attention as `video_length`, which diffusers 0.27 drops with a
        /// warning: self-attention stays per frame either way.
        public var unet_use_cross_frame_attention: Bool?
        /// Adds attn_temp / norm_temp (attention over frames) to every spatial transformer block.
        public var unet_use_temporal_attention: Bool?

        /// The reference constructor's defaults.
        public init() {}

        /// PersonaLive's denoising UNet: the sd-image-variations UNet inflated with
        /// inference_stage3.yaml's unet_additional_kwargs (`useTemporalModule: false` for stages 1–2).
        public static func personalive(useTemporalModule: Bool = true) -> Config {
            // The constructor defaults are the SD-1.x layout; the image-variations UNet differs
            // only in its 768-wide CLIP image embedding and the 64² latent size.
            var c = Config()
            c.sample_size = .one(64)
            c.cross_attention_dim = 768
            c.applyPersonaLiveKwargs(useTemporalModule: useTemporalModule)
            return c
        }

        /// Sets PersonaLive's unet_additional_kwargs (inference_stage1&2.yaml / inference_stage3.yaml).
        public mutating func applyPersonaLiveKwargs(useTemporalModule: Bool = true) {
            use_inflated_groupnorm = true
            unet_use_cross_frame_attention = false
            unet_use_temporal_attention = false
            use_motion_module = true
            motion_module_resolutions = [1, 2, 4, 8]
            motion_module_mid_block = true
            motion_module_decoder_only = false
            motion_module_type = "Vanilla"
            motion_module_kwargs = .personaliveMotion
            use_temporal_module = useTemporalModule
            temporal_module_type = "Vanilla"
            temporal_module_kwargs = .personaliveTemporal
        }

        /// from_pretrained_2d's config: a 2D UNet config with its block types replaced by their 3D
        /// counterparts (unet_additional_kwargs stay at their defaults until set). Throws for 2D
        /// settings the 3D constructor has no argument for, rather than dropping them.
        public init(inflating c: UNet2DConditionModel.Config) throws {
            func inflate(_ name: String) throws -> String {
                let map = ["CrossAttnDownBlock2D": "CrossAttnDownBlock3D", "DownBlock2D": "DownBlock3D",
                           "UpBlock2D": "UpBlock3D", "CrossAttnUpBlock2D": "CrossAttnUpBlock3D",
                           "UNetMidBlock2DCrossAttn": "UNetMidBlock3DCrossAttn"]
                guard let m = map[name] else { throw TorchError("UNet3DConditionModel: no 3D counterpart of block '\(name)'") }
                return m
            }
            let n = c.down_block_types.count
            guard case .one(let layers) = c.layers_per_block else {
                throw TorchError("UNet3DConditionModel: layers_per_block must be one number for the 3D UNet")
            }
            guard case .one(let cross) = c.cross_attention_dim else {
                throw TorchError("UNet3DConditionModel: cross_attention_dim must be one number for the 3D UNet")
            }
            guard try c.only_cross_attention.perBlock(n, key: "only_cross_attention").allSatisfy({ !$0 }) else {
                throw TorchError("UNet3DConditionModel: only_cross_attention is not supported")
            }
            guard try c.transformer_layers_per_block.perBlock(n, key: "transformer_layers_per_block").allSatisfy({ $0 == 1 }),
                  c.dropout == 0, c.resnet_out_scale_factor == 1, c.conv_in_kernel == 3, c.conv_out_kernel == 3,
                  c.time_embedding_dim == nil, c.time_embedding_act_fn == nil, c.timestep_post_act == nil,
                  c.time_cond_proj_dim == nil else {
                throw TorchError("UNet3DConditionModel: the 2D config uses settings the 3D UNet has no argument for "
                                 + "(transformer_layers_per_block, dropout, resnet_out_scale_factor, kernels, time embedding options)")
            }
            guard let mid = c.mid_block_type else { throw TorchError("UNet3DConditionModel: a mid block is required") }
            self.init()
            sample_size = c.sample_size
            in_channels = c.in_channels
            out_channels = c.out_channels
            center_input_sample = c.center_input_sample
            flip_sin_to_cos = c.flip_sin_to_cos
            freq_shift = c.freq_shift
            down_block_types = try c.down_block_types.map(inflate)
            mid_block_type = try inflate(mid)
            up_block_types = try c.up_block_types.map(inflate)
            block_out_channels = c.block_out_channels
            layers_per_block = layers
            downsample_padding = c.downsample_padding
            mid_block_scale_factor = c.mid_block_scale_factor
            act_fn = c.act_fn
            norm_num_groups = c.norm_num_groups
            norm_eps = c.norm_eps
            cross_attention_dim = cross
            attention_head_dim = c.attention_head_dim
            use_linear_projection = c.use_linear_projection
            upcast_attention = c.upcast_attention
            resnet_time_scale_shift = c.resnet_time_scale_shift
        }

        enum K: String, CodingKey, CaseIterable {
            case sample_size, in_channels, out_channels, center_input_sample, flip_sin_to_cos, freq_shift,
                 down_block_types, mid_block_type, up_block_types, only_cross_attention, block_out_channels,
                 layers_per_block, downsample_padding, mid_block_scale_factor, act_fn, norm_num_groups, norm_eps,
                 cross_attention_dim, attention_head_dim, dual_cross_attention, use_linear_projection,
                 class_embed_type, num_class_embeds, upcast_attention, resnet_time_scale_shift,
                 use_inflated_groupnorm, use_motion_module, use_temporal_module, motion_module_resolutions,
                 motion_module_mid_block, motion_module_decoder_only, motion_module_type, temporal_module_type,
                 motion_module_kwargs, temporal_module_kwargs, unet_use_cross_frame_attention,
                 unet_use_temporal_attention, unet_additional_kwargs
        }

        /// The keys that may also appear nested under `unet_additional_kwargs`.
        static let additionalKeys: [K] = [
            .use_inflated_groupnorm, .use_motion_module, .use_temporal_module, .motion_module_resolutions,
            .motion_module_mid_block, .motion_module_decoder_only, .motion_module_type, .temporal_module_type,
            .motion_module_kwargs, .temporal_module_kwargs, .unet_use_cross_frame_attention, .unet_use_temporal_attention,
        ]

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
            block_out_channels = try c.value(.block_out_channels, default: d.block_out_channels)
            layers_per_block = try c.value(.layers_per_block, default: d.layers_per_block)
            downsample_padding = try c.value(.downsample_padding, default: d.downsample_padding)
            mid_block_scale_factor = try c.value(.mid_block_scale_factor, default: d.mid_block_scale_factor)
            act_fn = try c.value(.act_fn, default: d.act_fn)
            norm_num_groups = try c.value(.norm_num_groups, default: d.norm_num_groups)
            norm_eps = try c.value(.norm_eps, default: d.norm_eps)
            cross_attention_dim = try c.value(.cross_attention_dim, default: d.cross_attention_dim)
            attention_head_dim = try c.value(.attention_head_dim, default: d.attention_head_dim)
            use_linear_projection = try c.value(.use_linear_projection, default: d.use_linear_projection)
            upcast_attention = try c.value(.upcast_attention, default: d.upcast_attention)
            resnet_time_scale_shift = try c.value(.resnet_time_scale_shift, default: d.resnet_time_scale_shift)

            // Accepted at their "off" value only: PersonaLive never changes them.
            let onlyCross: OneOrMany<Bool> = try c.value(.only_cross_attention, default: .one(false))
            if onlyCross.perBlockValues.contains(true) {
                throw TorchError("UNet3DConditionModel: only_cross_attention is not supported (false only)")
            }
            if try c.value(.dual_cross_attention, default: false) {
                throw TorchError("UNet3DConditionModel: dual_cross_attention is not supported (false only)")
            }
            for key in [K.class_embed_type, .num_class_embeds] where c.contains(key) {
                if try !c.decodeNil(forKey: key) {
                    throw TorchError("UNet3DConditionModel: \(key.rawValue) is not supported (class embeddings); it must be null")
                }
            }

            try readAdditional(c)
            if c.contains(.unet_additional_kwargs) {
                let nested = try c.superDecoder(forKey: .unet_additional_kwargs)
                try nested.rejectUnknownKeys(Self.additionalKeys.map(\.rawValue))
                let n = try nested.container(keyedBy: K.self)
                let twice = Self.additionalKeys.filter { c.contains($0) && n.contains($0) }
                if let k = twice.first {
                    throw TorchError("UNet3DConditionModel: '\(k.rawValue)' is given both at the top level and in unet_additional_kwargs")
                }
                try readAdditional(n)
            }
            try validate()
        }

        /// Reads the unet_additional_kwargs keys present in `c`, keeping current values otherwise.
        private mutating func readAdditional(_ c: KeyedDecodingContainer<K>) throws {
            use_inflated_groupnorm = try c.value(.use_inflated_groupnorm, default: use_inflated_groupnorm)
            use_motion_module = try c.value(.use_motion_module, default: use_motion_module)
            use_temporal_module = try c.value(.use_temporal_module, default: use_temporal_module)
            motion_module_resolutions = try c.value(.motion_module_resolutions, default: motion_module_resolutions)
            motion_module_mid_block = try c.value(.motion_module_mid_block, default: motion_module_mid_block)
            motion_module_decoder_only = try c.value(.motion_module_decoder_only, default: motion_module_decoder_only)
            motion_module_type = try c.value(.motion_module_type, default: motion_module_type)
            temporal_module_type = try c.value(.temporal_module_type, default: temporal_module_type)
            motion_module_kwargs = try c.value(.motion_module_kwargs, default: motion_module_kwargs)
            temporal_module_kwargs = try c.value(.temporal_module_kwargs, default: temporal_module_kwargs)
            unet_use_cross_frame_attention = try c.value(.unet_use_cross_frame_attention, default: unet_use_cross_frame_attention)
            unet_use_temporal_attention = try c.value(.unet_use_temporal_attention, default: unet_use_temporal_attention)
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: K.self)
            try c.encodeIfPresent(sample_size, forKey: .sample_size)
            try c.encode(in_channels, forKey: .in_channels)
            try c.encode(out_channels, forKey: .out_channels)
            try c.encode(center_input_sample, forKey: .center_input_sample)
            try c.encode(flip_sin_to_cos, forKey: .flip_sin_to_cos)
            try c.encode(freq_shift, forKey: .freq_shift)
            try c.encode(down_block_types, forKey: .down_block_types)
            try c.encode(mid_block_type, forKey: .mid_block_type)
            try c.encode(up_block_types, forKey: .up_block_types)
            try c.encode(block_out_channels, forKey: .block_out_channels)
            try c.encode(layers_per_block, forKey: .layers_per_block)
            try c.encode(downsample_padding, forKey: .downsample_padding)
            try c.encode(mid_block_scale_factor, forKey: .mid_block_scale_factor)
            try c.encode(act_fn, forKey: .act_fn)
            try c.encode(norm_num_groups, forKey: .norm_num_groups)
            try c.encode(norm_eps, forKey: .norm_eps)
            try c.encode(cross_attention_dim, forKey: .cross_attention_dim)
            try c.encode(attention_head_dim, forKey: .attention_head_dim)
            try c.encode(use_linear_projection, forKey: .use_linear_projection)
            try c.encode(upcast_attention, forKey: .upcast_attention)
            try c.encode(resnet_time_scale_shift, forKey: .resnet_time_scale_shift)
            try c.encode(use_inflated_groupnorm, forKey: .use_inflated_groupnorm)
            try c.encode(use_motion_module, forKey: .use_motion_module)
            try c.encode(use_temporal_module, forKey: .use_temporal_module)
            try c.encode(motion_module_resolutions, forKey: .motion_module_resolutions)
            try c.encode(motion_module_mid_block, forKey: .motion_module_mid_block)
            try c.encode(motion_module_decoder_only, forKey: .motion_module_decoder_only)
            try c.encode(motion_module_type, forKey: .motion_module_type)
            try c.encode(temporal_module_type, forKey: .temporal_module_type)
            try c.encode(motion_module_kwargs, forKey: .motion_module_kwargs)
            try c.encode(temporal_module_kwargs, forKey: .temporal_module_kwargs)
            try c.encode(unet_use_cross_frame_attention, forKey: .unet_use_cross_frame_attention)
            try c.encode(unet_use_temporal_attention, forKey: .unet_use_temporal_attention)
        }

        /// Checks what the reference would reject while building (so a config fails when decoded).
        public func validate() throws {
            let n = down_block_types.count
            guard n > 0, up_block_types.count == n, block_out_channels.count == n else {
                throw TorchError("UNet3DConditionModel: down_block_types (\(n)), up_block_types (\(up_block_types.count)) "
                                 + "and block_out_channels (\(block_out_channels.count)) must have the same length")
            }
            _ = try attention_head_dim.perBlock(n, key: "attention_head_dim")
            for (flag, type, name) in [(use_motion_module, motion_module_type, "motion_module_type"),
                                       (use_temporal_module, temporal_module_type, "temporal_module_type")] where flag {
                // get_motion_module knows only "Vanilla" (VanillaTemporalModule).
                guard type == "Vanilla" else {
                    throw TorchError("UNet3DConditionModel: \(name) '\(type ?? "null")' is not supported (Vanilla only)")
                }
            }
            if use_motion_module { try motion_module_kwargs.validate() }
            if use_temporal_module { try temporal_module_kwargs.validate() }
        }

        public var timeEmbedDim: Int { block_out_channels[0] * 4 }
    }

    // Declaration order = the reference's registration order (mid_block is registered after
    // up_blocks there, because it starts as a plain `None` attribute).
    public let conv_in: InflatedConv3d
    public let time_proj: Timesteps
    public let time_embedding: TimestepEmbedding
    public let down_blocks: [Module]
    public let up_blocks: [Module]
    public let mid_block: UNetMidBlock3DCrossAttn
    public let conv_norm_out: InflatedGroupNorm
    public let conv_out: InflatedConv3d
    public let config: Config

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
        let n = config.down_block_types.count
        let channels = config.block_out_channels
        let heads = try config.attention_head_dim.perBlock(n, key: "attention_head_dim")
        let tembDim = config.timeEmbedDim

        conv_in = try InflatedConv3d(config.in_channels, channels[0], kernelSize: 3, padding: 1)
        time_proj = Timesteps(numChannels: channels[0], flipSinToCos: config.flip_sin_to_cos,
                              downscaleFreqShift: config.freq_shift)
        // The reference builds TimestepEmbedding(C0, 4·C0) with its default SiLU, whatever act_fn says.
        time_embedding = try TimestepEmbedding(inChannels: channels[0], timeEmbedDim: tembDim)

        var base = UNet3DBlockSettings(tembChannels: tembDim)
        base.resnetEps = config.norm_eps
        base.resnetGroups = config.norm_num_groups
        base.resnetActFn = config.act_fn
        base.resnetTimeScaleShift = config.resnet_time_scale_shift
        base.crossAttentionDim = config.cross_attention_dim
        base.useLinearProjection = config.use_linear_projection
        base.upcastAttention = config.upcast_attention
        base.useInflatedGroupNorm = config.use_inflated_groupnorm
        base.unetUseTemporalAttention = config.unet_use_temporal_attention ?? false

        /// Settings of one stage: heads, and which of the motion / temporal modules it gets.
        func settings(heads h: Int, motion: Bool, temporal: Bool) -> UNet3DBlockSettings {
            var s = base
            s.numAttentionHeads = h
            s.motionModule = motion ? config.motion_module_kwargs : nil
            s.temporalModule = temporal ? config.temporal_module_kwargs : nil
            return s
        }

        var downs: [Module] = []
        var outC = channels[0]
        for (i, type) in config.down_block_types.enumerated() {
            let res = 1 << i
            let inC = outC
            outC = channels[i]
            let here = config.motion_module_resolutions.contains(res) && !config.motion_module_decoder_only
            let s = settings(heads: heads[i], motion: config.use_motion_module && here,
                             temporal: config.use_temporal_module && here)
            let last = i == n - 1
            switch type {
            case "CrossAttnDownBlock3D":
                downs.append(try CrossAttnDownBlock3D(inChannels: inC, outChannels: outC, numLayers: config.layers_per_block,
                                                      addDownsample: !last, downsamplePadding: config.downsample_padding,
                                                      settings: s))
            case "DownBlock3D":
                downs.append(try DownBlock3D(inChannels: inC, outChannels: outC, numLayers: config.layers_per_block,
                                             addDownsample: !last, downsamplePadding: config.downsample_padding, settings: s))
            default:
                throw TorchError("UNet3DConditionModel: down block type '\(type)' is not supported (CrossAttnDownBlock3D, DownBlock3D)")
            }
        }
        down_blocks = downs

        guard config.mid_block_type == "UNetMidBlock3DCrossAttn" else {
            throw TorchError("UNet3DConditionModel: unknown mid_block_type '\(config.mid_block_type)' (UNetMidBlock3DCrossAttn only)")
        }
        mid_block = try UNetMidBlock3DCrossAttn(
            inChannels: channels[n - 1], outputScaleFactor: config.mid_block_scale_factor,
            settings: settings(heads: heads[n - 1], motion: config.use_motion_module && config.motion_module_mid_block,
                               temporal: config.use_temporal_module && config.motion_module_mid_block))

        let rChannels = Array(channels.reversed()), rHeads = Array(heads.reversed())
        var ups: [Module] = []
        outC = rChannels[0]
        for (i, type) in config.up_block_types.enumerated() {
            // The reference assumes four levels here (2^(3−i)), whatever the depth.
            let res = i <= 3 ? 1 << (3 - i) : 0
            let prevC = outC
            outC = rChannels[i]
            let inC = rChannels[min(i + 1, n - 1)]
            let here = config.motion_module_resolutions.contains(res)
            let s = settings(heads: rHeads[i], motion: config.use_motion_module && here,
                             temporal: config.use_temporal_module && here)
            let last = i == n - 1
            switch type {
            case "CrossAttnUpBlock3D":
                ups.append(try CrossAttnUpBlock3D(inChannels: inC, prevOutputChannel: prevC, outChannels: outC,
                                                  numLayers: config.layers_per_block + 1, addUpsample: !last, settings: s))
            case "UpBlock3D":
                ups.append(try UpBlock3D(inChannels: inC, prevOutputChannel: prevC, outChannels: outC,
                                         numLayers: config.layers_per_block + 1, addUpsample: !last, settings: s))
            default:
                throw TorchError("UNet3DConditionModel: up block type '\(type)' is not supported (UpBlock3D, CrossAttnUpBlock3D)")
            }
        }
        up_blocks = ups

        conv_norm_out = try InflatedGroupNorm(numGroups: config.norm_num_groups, numChannels: channels[0],
                                              eps: config.norm_eps, perFrame: config.use_inflated_groupnorm)
        conv_out = try InflatedConv3d(channels[0], config.out_channels, kernelSize: 3, padding: 1)
    }

    // MARK: typed views

    public var downBlocks: [any UNet3DDownBlock] { down_blocks.map { $0 as! any UNet3DDownBlock } }
    public var upBlocks: [any UNet3DUpBlock] { up_blocks.map { $0 as! any UNet3DUpBlock } }

    /// Every spatial TemporalBasicTransformerBlock with its key path, in module (DFS) order — down
    /// blocks, up blocks, mid block — the order `torch_dfs` sees them in (reference attention pairs
    /// blocks in this order). Motion / temporal modules hold no such blocks.
    public var namedTransformerBlocks: [(String, TemporalBasicTransformerBlock)] {
        namedModules().compactMap { name, m in (m as? TemporalBasicTransformerBlock).map { (name, $0) } }
    }

    public var transformerBlocks: [TemporalBasicTransformerBlock] { namedTransformerBlocks.map(\.1) }

    /// Every motion module (`…motion_modules.N`) and temporal module (`…temporal_modules.N`) with its path.
    public var namedMotionModules: [(String, VanillaTemporalModule)] {
        namedModules().compactMap { name, m in
            name.contains("motion_modules.") ? (m as? VanillaTemporalModule).map { (name, $0) } : nil
        }
    }

    public var namedTemporalModules: [(String, VanillaTemporalModule)] {
        namedModules().compactMap { name, m in
            name.contains("temporal_modules.") ? (m as? VanillaTemporalModule).map { (name, $0) } : nil
        }
    }

    // MARK: forward

    /// sample: (b, in_channels, f, h, w). timesteps: per frame (b·f,) in (b f) order, per sample
    /// (b,), or one value (0-dim or (1,)); any numeric dtype. clip: (b, S, cross_attention_dim) —
    /// repeated to every frame. motion: the motion tokens (b, f, n, d) or (b·f, n, d), required when
    /// the UNet has motion modules. poseCond: (b, C0, f, h, w), added right after conv_in.
    /// Returns (b, out_channels, f, h, w).
    public func callAsFunction(_ sample: Tensor, timesteps: Tensor, clip: Tensor, motion: Tensor? = nil,
                               poseCond: Tensor? = nil) throws -> Tensor {
        guard sample.dim == 5, sample.shape[1] == config.in_channels else {
            throw TorchError("UNet3DConditionModel: sample must be (b, \(config.in_channels), f, h, w), got \(sample.shape)")
        }
        let (b, f) = (sample.shape[0], sample.shape[2])
        if config.use_motion_module && motion == nil {
            throw TorchError("UNet3DConditionModel: this UNet has motion modules, so motion tokens are required")
        }
        // Skips must meet upsampled maps of equal size; when h or w is not a multiple of
        // 2^(upsamplers), each upsampler is told the size of the skip it will meet.
        let factor = 1 << upBlocks.filter { !$0.upsamplers.isEmpty }.count
        let forwardUpsampleSize = sample.shape[3...].contains { $0 % factor != 0 }

        var x = config.center_input_sample ? try sample * 2 - 1 : sample

        // time: one embedding per row of `timesteps`; the resnets apply it per frame (b·f rows),
        // per sample (b rows) or to everything (1 row).
        var t = timesteps
        if t.dim == 0 { t = try t.reshape([1]) }
        guard t.dim == 1, [1, b, b * f].contains(t.shape[0]) else {
            throw TorchError("UNet3DConditionModel: timesteps must be one value, (\(b),) or (\(b * f),), got \(timesteps.shape)")
        }
        if t.device != sample.device { t = try t.to(sample.device) }
        var tEmb = try time_proj(t)
        // time_proj always yields float32; the embedding runs in the model's dtype.
        if tEmb.dtype != sample.dtype { tEmb = try tEmb.to(sample.dtype) }
        let emb = try time_embedding(tEmb)

        x = try conv_in(x)
        if let poseCond { x = try x + poseCond }

        var skips: [Tensor] = [x]
        for block in downBlocks {
            let (h, res) = try block(x, temb: emb, context: clip, motionTokens: motion)
            x = h
            skips += res
        }

        x = try mid_block(x, temb: emb, context: clip, motionTokens: motion)

        let ups = upBlocks
        for (i, block) in ups.enumerated() {
            let k = block.resnets.count
            guard skips.count >= k else {
                throw TorchError("UNet3DConditionModel: up_blocks.\(i) needs \(k) skip tensors, \(skips.count) left")
            }
            let res = Array(skips.suffix(k))
            skips.removeLast(k)
            var upsampleSize: (Int, Int)?
            if i < ups.count - 1, forwardUpsampleSize, let next = skips.last {
                upsampleSize = (next.shape[3], next.shape[4])
            }
            x = try block(x, skips: res, temb: emb, context: clip, motionTokens: motion, upsampleSize: upsampleSize)
        }

        // The reference's conv_act is nn.SiLU whatever act_fn says.
        x = try conv_norm_out(x).silu()
        return try conv_out(x)
    }

    // MARK: from_pretrained_2d

    /// Missing keys a 2D-initialised load accepts (documented allow-list): the motion modules
    /// (new in the 3D UNet; zero-initialised proj_out makes them start as identity), the
    /// optional attn_temp / norm_temp, and for temporal modules: all of them when no temporal
    /// checkpoint is given, otherwise only their `pos_encoder.pe` tables (the reference drops
    /// those from the checkpoint and keeps the constructor's) and, with `zeroTemporalProjOut`,
    /// their proj_out (kept zero-initialised, as `mm_zero_proj_out`).
    public static func pretrained2DAllowMissing(temporal: Bool, zeroTemporalProjOut: Bool = false) -> [String] {
        var globs = ["*motion_modules.*", "*.attn_temp.*", "*.norm_temp.*"]
        if !temporal {
            globs.append("*temporal_modules.*")
        } else {
            globs.append("*temporal_modules.*pos_encoder.pe")
            if zeroTemporalProjOut { globs.append("*temporal_modules.*proj_out.*") }
        }
        return globs
    }

    /// `UNet3DConditionModel.from_pretrained_2d`: builds the 3D UNet and loads a 2D UNet's weights
    /// (same keys: the inflated layers keep the 2D shapes) plus, optionally, a temporal checkpoint
    /// whose `motion_modules.` keys are renamed `temporal_modules.` (AnimateDiff / X-NeMo motion
    /// modules, or PersonaLive's own temporal_module.pth). Unlike the reference (strict=False),
    /// loading is strict up to `pretrained2DAllowMissing`: any other missing or unexpected key,
    /// or any shape mismatch, is an error naming it.
    public static func fromPretrained2D(_ config: Config, unet2DStateDict: StateDictSource,
                                        temporal: StateDictSource? = nil,
                                        zeroTemporalProjOut: Bool = false) throws -> UNet3DConditionModel {
        let model = try UNet3DConditionModel(config)
        try model.loadPretrained2D(unet2DStateDict: unet2DStateDict, temporal: temporal,
                                   zeroTemporalProjOut: zeroTemporalProjOut)
        return model
    }

    /// The loading half of `fromPretrained2D`, into this (already built) model.
    @discardableResult
    public func loadPretrained2D(unet2DStateDict: StateDictSource, temporal: StateDictSource? = nil,
                                 zeroTemporalProjOut: Bool = false) throws -> LoadReport {
        var table: [String: (any StateDictSource, String)] = [:]
        for key in unet2DStateDict.keys { table[key] = (unet2DStateDict, key) }
        if let temporal {
            for key in temporal.keys where !key.contains("pos_encoder") {
                let renamed = key.replacingOccurrences(of: "motion_modules.", with: "temporal_modules.")
                if zeroTemporalProjOut && renamed.contains("proj_out") { continue }
                table[renamed] = (temporal, key)  // overrides 2D keys, as state_dict.update does
            }
        }
        let name = unet2DStateDict.sourceName + (temporal.map { " + \($0.sourceName)" } ?? "")
        return try load(from: MappedStateDictSource(table, name: name), strict: true,
                        allowMissing: Self.pretrained2DAllowMissing(temporal: temporal != nil,
                                                                    zeroTemporalProjOut: zeroTemporalProjOut))
    }
}

/// Keys served from other sources under other names (from_pretrained_2d's merged, renamed dict).
struct MappedStateDictSource: StateDictSource {
    let table: [String: (any StateDictSource, String)]
    let sourceName: String

    init(_ table: [String: (any StateDictSource, String)], name: String) {
        self.table = table
        sourceName = name
    }

    var keys: [String] { table.keys.sorted() }
    func shape(of key: String) -> [Int]? { table[key].flatMap { $0.0.shape(of: $0.1) } }
    func read(_ key: String, into tensor: Tensor) throws {
        guard let (source, original) = table[key] else { throw TorchError("\(sourceName): no key \(key)") }
        try source.read(original, into: tensor)
    }
}

private extension OneOrMany where T == Bool {
    var perBlockValues: [Bool] {
        switch self {
        case .one(let v): return [v]
        case .many(let vs): return vs
        }
    }
}
