// Transformer2DModel.swift — mirrors diffusers.models.transformers.transformer_2d.Transformer2DModel
// (diffusers 0.27) for continuous inputs: GroupNorm (eps 1e-6) → proj_in (Conv2d 1×1, or Linear with
// use_linear_projection) → (B, H·W, C) tokens → transformer_blocks → proj_out → + input.
import NN
import Torch

public final class Transformer2DModel: Module {
    public struct Config: Codable, Sendable {
        public var num_attention_heads: Int = 16
        public var attention_head_dim: Int = 88
        public var in_channels: Int
        public var num_layers: Int = 1
        public var dropout: Double = 0
        public var norm_num_groups: Int = 32
        public var cross_attention_dim: Int?
        public var attention_bias: Bool = false
        public var activation_fn: String = "geglu"
        public var use_linear_projection: Bool = false
        public var only_cross_attention: Bool = false
        public var double_self_attention: Bool = false
        public var upcast_attention: Bool = false
        public var norm_elementwise_affine: Bool = true
        public var norm_eps: Double = 1e-5

        public init(num_attention_heads: Int, attention_head_dim: Int, in_channels: Int, num_layers: Int = 1,
                    norm_num_groups: Int = 32, cross_attention_dim: Int? = nil, use_linear_projection: Bool = false) {
            self.num_attention_heads = num_attention_heads
            self.attention_head_dim = attention_head_dim
            self.in_channels = in_channels
            self.num_layers = num_layers
            self.norm_num_groups = norm_num_groups
            self.cross_attention_dim = cross_attention_dim
            self.use_linear_projection = use_linear_projection
        }

        enum K: String, CodingKey, CaseIterable {
            case num_attention_heads, attention_head_dim, in_channels, out_channels, num_layers, dropout,
                 norm_num_groups, cross_attention_dim, attention_bias, sample_size, num_vector_embeds, patch_size,
                 activation_fn, num_embeds_ada_norm, use_linear_projection, only_cross_attention,
                 double_self_attention, upcast_attention, norm_type, norm_elementwise_affine, norm_eps,
                 attention_type, caption_channels, interpolation_scale
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: K.self)
            num_attention_heads = try c.value(.num_attention_heads, default: 16)
            attention_head_dim = try c.value(.attention_head_dim, default: 88)
            guard let inC: Int = try c.value(.in_channels, default: nil) else {
                throw TorchError("Transformer2DModel: in_channels is required (only continuous inputs are supported)")
            }
            in_channels = inC
            num_layers = try c.value(.num_layers, default: 1)
            dropout = try c.value(.dropout, default: 0)
            norm_num_groups = try c.value(.norm_num_groups, default: 32)
            cross_attention_dim = try c.value(.cross_attention_dim, default: nil)
            attention_bias = try c.value(.attention_bias, default: false)
            activation_fn = try c.value(.activation_fn, default: "geglu")
            use_linear_projection = try c.value(.use_linear_projection, default: false)
            only_cross_attention = try c.value(.only_cross_attention, default: false)
            double_self_attention = try c.value(.double_self_attention, default: false)
            upcast_attention = try c.value(.upcast_attention, default: false)
            norm_elementwise_affine = try c.value(.norm_elementwise_affine, default: true)
            norm_eps = try c.value(.norm_eps, default: 1e-5)
            // Accepted but without effect for continuous inputs, as in diffusers 0.27 (proj_out
            // maps back to in_channels whatever out_channels says; sample_size only matters for patches).
            _ = try c.value(.out_channels, default: Int?.none)
            _ = try c.value(.sample_size, default: Int?.none)
            for key in [K.num_vector_embeds, .patch_size, .num_embeds_ada_norm, .caption_channels] {
                if let v: Int = try c.value(key, default: nil) {
                    throw TorchError("Transformer2DModel: \(key.rawValue) = \(v) is not supported (continuous inputs only)")
                }
            }
            if let v: Double = try c.value(.interpolation_scale, default: nil) {
                throw TorchError("Transformer2DModel: interpolation_scale = \(v) is not supported (patched inputs only)")
            }
            let normType: String = try c.value(.norm_type, default: "layer_norm")
            guard normType == "layer_norm" else {
                throw TorchError("Transformer2DModel: norm_type '\(normType)' is not supported (layer_norm only)")
            }
            let attentionType: String = try c.value(.attention_type, default: "default")
            guard attentionType == "default" else {
                throw TorchError("Transformer2DModel: attention_type '\(attentionType)' is not supported (default only)")
            }
        }

        /// The config of each of the `num_layers` BasicTransformerBlocks.
        public var blockConfig: BasicTransformerBlock.Config {
            var b = BasicTransformerBlock.Config(dim: num_attention_heads * attention_head_dim,
                                                 num_attention_heads: num_attention_heads,
                                                 attention_head_dim: attention_head_dim,
                                                 cross_attention_dim: cross_attention_dim)
            b.dropout = dropout
            b.activation_fn = activation_fn
            b.attention_bias = attention_bias
            b.only_cross_attention = only_cross_attention
            b.double_self_attention = double_self_attention
            b.upcast_attention = upcast_attention
            b.norm_elementwise_affine = norm_elementwise_affine
            b.norm_eps = norm_eps
            return b
        }
    }

    public let norm: GroupNorm
    /// Conv2d 1×1 (SD-1.x) or Linear (use_linear_projection, SD-2.x).
    public let proj_in: Module
    public let transformer_blocks: [BasicTransformerBlock]
    public let proj_out: Module
    public let config: Config

    public init(_ config: Config) throws {
        self.config = config
        let inner = config.num_attention_heads * config.attention_head_dim
        let inC = config.in_channels
        norm = try GroupNorm(numGroups: config.norm_num_groups, numChannels: inC, eps: 1e-6)
        if config.use_linear_projection {
            proj_in = try Linear(inC, inner)
        } else {
            proj_in = try Conv2d(inC, inner, kernelSize: 1)
        }
        let blockConfig = config.blockConfig
        transformer_blocks = try (0..<config.num_layers).map { _ in try BasicTransformerBlock(blockConfig) }
        if config.use_linear_projection {
            proj_out = try Linear(inner, inC)
        } else {
            proj_out = try Conv2d(inner, inC, kernelSize: 1)
        }
    }

    /// hidden: (B, C, H, W); context: (B, S, cross_attention_dim) or nil. Returns (B, C, H, W).
    public func callAsFunction(_ hidden: Tensor, context: Tensor? = nil) throws -> Tensor {
        guard hidden.dim == 4, hidden.shape[1] == config.in_channels else {
            throw TorchError("Transformer2DModel: expected (B, \(config.in_channels), H, W), got \(hidden.shape)")
        }
        let (b, h, w) = (hidden.shape[0], hidden.shape[2], hidden.shape[3])
        let inner = config.num_attention_heads * config.attention_head_dim
        let projIn = proj_in as! any UnaryLayer, projOut = proj_out as! any UnaryLayer
        var x = try norm(hidden)
        // Tokens are row-major over (H, W); the 1×1 conv runs before the reshape and the linear
        // projection after it, exactly as diffusers orders them.
        if config.use_linear_projection {
            x = try projIn(x.permute([0, 2, 3, 1]).reshape([b, h * w, config.in_channels]))
        } else {
            x = try projIn(x).permute([0, 2, 3, 1]).reshape([b, h * w, inner])
        }
        for block in transformer_blocks { x = try block(x, context: context) }
        if config.use_linear_projection {
            x = try projOut(x).reshape([b, h, w, config.in_channels]).permute([0, 3, 1, 2]).contiguous()
        } else {
            x = try projOut(x.reshape([b, h, w, inner]).permute([0, 3, 1, 2]).contiguous())
        }
        return try x + hidden
    }
}
