// BasicTransformerBlock.swift — mirrors diffusers.models.attention.BasicTransformerBlock
// (norm_type "layer_norm"): self-attention, cross-attention, GEGLU feed-forward, pre-norm residuals.
import NN
import Torch

public final class BasicTransformerBlock: Module {
    public struct Config: Codable, Sendable {
        public var dim: Int
        public var num_attention_heads: Int
        public var attention_head_dim: Int
        public var dropout: Double = 0
        public var cross_attention_dim: Int?
        public var activation_fn: String = "geglu"
        public var attention_bias: Bool = false
        public var only_cross_attention: Bool = false
        public var double_self_attention: Bool = false
        public var upcast_attention: Bool = false
        public var norm_elementwise_affine: Bool = true
        public var norm_type: String = "layer_norm"
        public var norm_eps: Double = 1e-5
        public var ff_inner_dim: Int?
        public var ff_bias: Bool = true
        public var attention_out_bias: Bool = true

        public init(dim: Int, num_attention_heads: Int, attention_head_dim: Int, cross_attention_dim: Int? = nil) {
            self.dim = dim
            self.num_attention_heads = num_attention_heads
            self.attention_head_dim = attention_head_dim
            self.cross_attention_dim = cross_attention_dim
        }

        enum K: String, CodingKey, CaseIterable {
            case dim, num_attention_heads, attention_head_dim, dropout, cross_attention_dim, activation_fn,
                 num_embeds_ada_norm, attention_bias, only_cross_attention, double_self_attention, upcast_attention,
                 norm_elementwise_affine, norm_type, norm_eps, final_dropout, attention_type, positional_embeddings,
                 num_positional_embeddings, ff_inner_dim, ff_bias, attention_out_bias
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: K.self)
            dim = try c.decode(Int.self, forKey: .dim)
            num_attention_heads = try c.decode(Int.self, forKey: .num_attention_heads)
            attention_head_dim = try c.decode(Int.self, forKey: .attention_head_dim)
            dropout = try c.value(.dropout, default: 0)
            cross_attention_dim = try c.value(.cross_attention_dim, default: nil)
            activation_fn = try c.value(.activation_fn, default: "geglu")
            attention_bias = try c.value(.attention_bias, default: false)
            only_cross_attention = try c.value(.only_cross_attention, default: false)
            double_self_attention = try c.value(.double_self_attention, default: false)
            upcast_attention = try c.value(.upcast_attention, default: false)
            norm_elementwise_affine = try c.value(.norm_elementwise_affine, default: true)
            norm_type = try c.value(.norm_type, default: "layer_norm")
            norm_eps = try c.value(.norm_eps, default: 1e-5)
            ff_inner_dim = try c.value(.ff_inner_dim, default: nil)
            ff_bias = try c.value(.ff_bias, default: true)
            attention_out_bias = try c.value(.attention_out_bias, default: true)
            guard norm_type == "layer_norm" else {
                throw TorchError("BasicTransformerBlock: norm_type '\(norm_type)' is not supported (layer_norm only)")
            }
            if let ada: Int = try c.value(.num_embeds_ada_norm, default: nil) {
                throw TorchError("BasicTransformerBlock: num_embeds_ada_norm \(ada) is not supported")
            }
            if let pe: String = try c.value(.positional_embeddings, default: nil) {
                throw TorchError("BasicTransformerBlock: positional_embeddings '\(pe)' is not supported")
            }
        }
    }

    public let norm1: LayerNorm
    public let attn1: Attention
    public let norm2: LayerNorm?
    public let attn2: Attention?
    public let norm3: LayerNorm
    public let ff: FeedForward
    public let config: Config

    /// Optional hook around self-attention, used by reference attention (PersonaLive): it sees
    /// this block's norm1 output and may supply extra key/value tokens or record the features.
    public var selfAttentionHook: ((_ block: BasicTransformerBlock, _ normed: Tensor) throws -> Tensor?)?

    public init(_ c: Config) throws {
        config = c
        let affine = c.norm_elementwise_affine
        norm1 = try LayerNorm(c.dim, eps: c.norm_eps, elementwiseAffine: affine)
        attn1 = try Attention(queryDim: c.dim, crossAttentionDim: c.only_cross_attention ? c.cross_attention_dim : nil,
                              heads: c.num_attention_heads, dimHead: c.attention_head_dim, dropout: c.dropout,
                              bias: c.attention_bias, outBias: c.attention_out_bias, upcastAttention: c.upcast_attention)
        if c.cross_attention_dim != nil || c.double_self_attention {
            norm2 = try LayerNorm(c.dim, eps: c.norm_eps, elementwiseAffine: affine)
            attn2 = try Attention(queryDim: c.dim, crossAttentionDim: c.double_self_attention ? nil : c.cross_attention_dim,
                                  heads: c.num_attention_heads, dimHead: c.attention_head_dim, dropout: c.dropout,
                                  bias: c.attention_bias, outBias: c.attention_out_bias,
                                  upcastAttention: c.upcast_attention)
        } else {
            norm2 = nil
            attn2 = nil
        }
        norm3 = try LayerNorm(c.dim, eps: c.norm_eps, elementwiseAffine: affine)
        ff = try FeedForward(dim: c.dim, dropout: c.dropout, activation: c.activation_fn, innerDim: c.ff_inner_dim,
                             bias: c.ff_bias)
    }

    /// hidden: (B, L, dim); context: (B, S, cross_attention_dim).
    public func callAsFunction(_ hidden: Tensor, context: Tensor? = nil) throws -> Tensor {
        let n1 = try norm1(hidden)
        var h: Tensor
        if let hook = selfAttentionHook, let extra = try hook(self, n1) {
            // K/V = [own tokens, extra tokens]
            let kv = try Tensor.cat([n1, extra], dim: 1)
            h = try attn1.output(attn1.attend(q: attn1.to_q(n1), k: attn1.to_k(kv), v: attn1.to_v(kv))) + hidden
        } else {
            h = try attn1(n1, context: config.only_cross_attention ? context : nil) + hidden
        }
        if let norm2, let attn2 {
            h = try attn2(norm2(h), context: config.double_self_attention ? nil : context) + h
        }
        return try ff(norm3(h)) + h
    }
}
