// CLIPVision.swift — mirrors transformers.models.clip.modeling_clip.CLIPVisionModelWithProjection
// (transformers 4.36: CLIPVisionEmbeddings, CLIPAttention (eager), CLIPMLP, CLIPEncoderLayer,
// CLIPVisionTransformer) and the CLIPImageProcessor preprocessing the image encoder expects.
//
// Key names are transformers' (`vision_model.pre_layrnorm` is their spelling). `position_ids` is a
// non-persistent buffer in 4.36, so it is not in the state dict; older checkpoints that still carry
// `vision_model.embeddings.position_ids` load with that key ignored, as transformers does.
import Foundation
import NN
import Torch

public final class CLIPVisionModelWithProjection: Module {
    /// transformers `CLIPVisionConfig` (a config.json of `clip_vision_model`, or the `vision_config`
    /// of a full `clip` config). Unknown keys are errors; the generic PretrainedConfig keys are accepted.
    public struct Config: Codable, Sendable, Equatable {
        public var hidden_size: Int = 768
        public var intermediate_size: Int = 3072
        public var projection_dim: Int = 512
        public var num_hidden_layers: Int = 12
        public var num_attention_heads: Int = 12
        public var num_channels: Int = 3
        public var image_size: Int = 224
        public var patch_size: Int = 32
        public var hidden_act: String = "quick_gelu"
        public var layer_norm_eps: Double = 1e-5
        public var attention_dropout: Double = 0
        public var initializer_range: Double = 0.02
        public var initializer_factor: Double = 1

        public init() {}

        /// OpenAI CLIP ViT-L/14 vision tower with the 768-d projection (sd-image-variations image_encoder).
        public static var vitL14: Config {
            var c = Config()
            c.hidden_size = 1024
            c.intermediate_size = 4096
            c.projection_dim = 768
            c.num_hidden_layers = 24
            c.num_attention_heads = 16
            c.patch_size = 14
            return c
        }

        enum K: String, CodingKey, CaseIterable {
            case hidden_size, intermediate_size, projection_dim, num_hidden_layers, num_attention_heads, num_channels,
                 image_size, patch_size, hidden_act, layer_norm_eps, attention_dropout, initializer_range,
                 initializer_factor
        }

        /// transformers.PretrainedConfig attributes any config.json may carry; they do not change the model.
        static let pretrainedConfigKeys = [
            "architectures", "model_type", "torch_dtype", "transformers_version", "dropout", "return_dict",
            "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16", "tf_legacy_loss",
            "pruned_heads", "tie_word_embeddings", "is_encoder_decoder", "is_decoder", "cross_attention_hidden_size",
            "add_cross_attention", "tie_encoder_decoder", "max_length", "min_length", "do_sample", "early_stopping",
            "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
            "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
            "bad_words_ids", "num_return_sequences", "chunk_size_feed_forward", "output_scores",
            "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
            "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "finetuning_task",
            "id2label", "label2id", "tokenizer_class", "prefix", "bos_token_id", "pad_token_id", "eos_token_id",
            "sep_token_id", "decoder_start_token_id", "task_specific_params", "problem_type", "gradient_checkpointing",
        ]

        public init(from decoder: Decoder) throws {
            let any = try decoder.container(keyedBy: AnyCodingKey.self)
            // A full CLIPConfig: the vision tower's settings are under `vision_config`.
            if any.contains(AnyCodingKey("vision_config")) {
                self = try any.decode(Config.self, forKey: AnyCodingKey("vision_config"))
                return
            }
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue), ignoring: Self.pretrainedConfigKeys)
            let c = try decoder.container(keyedBy: K.self)
            let d = Config()
            hidden_size = try c.value(.hidden_size, default: d.hidden_size)
            intermediate_size = try c.value(.intermediate_size, default: d.intermediate_size)
            projection_dim = try c.value(.projection_dim, default: d.projection_dim)
            num_hidden_layers = try c.value(.num_hidden_layers, default: d.num_hidden_layers)
            num_attention_heads = try c.value(.num_attention_heads, default: d.num_attention_heads)
            num_channels = try c.value(.num_channels, default: d.num_channels)
            image_size = try c.value(.image_size, default: d.image_size)
            patch_size = try c.value(.patch_size, default: d.patch_size)
            hidden_act = try c.value(.hidden_act, default: d.hidden_act)
            layer_norm_eps = try c.value(.layer_norm_eps, default: d.layer_norm_eps)
            attention_dropout = try c.value(.attention_dropout, default: d.attention_dropout)
            initializer_range = try c.value(.initializer_range, default: d.initializer_range)
            initializer_factor = try c.value(.initializer_factor, default: d.initializer_factor)
        }

        func validate() throws {
            guard hidden_size % num_attention_heads == 0 else {
                throw TorchError("CLIPVisionConfig: hidden_size \(hidden_size) is not divisible by num_attention_heads \(num_attention_heads)")
            }
            guard patch_size > 0, image_size >= patch_size else {
                throw TorchError("CLIPVisionConfig: patch_size \(patch_size) does not fit image_size \(image_size)")
            }
            _ = try CLIPActivation(hidden_act)
        }
    }

    /// What a forward pass returns (CLIPVisionModelOutput with output_hidden_states=True).
    public struct Output {
        /// visual_projection(post_layernorm(last_hidden_state[:, 0])): (B, projection_dim).
        public let imageEmbeds: Tensor
        /// Output of the last encoder layer (not layer-normed): (B, 1 + patches, hidden).
        public let lastHiddenState: Tensor
        /// post_layernorm(last_hidden_state[:, 0]): (B, hidden).
        public let pooled: Tensor
        /// pre_layrnorm output, then each layer's output: num_hidden_layers + 1 tensors.
        public let hiddenStates: [Tensor]
    }

    public let vision_model: CLIPVisionTransformer
    public let visual_projection: Linear
    public let config: Config

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
        vision_model = try CLIPVisionTransformer(config)
        visual_projection = try Linear(config.hidden_size, config.projection_dim, bias: false)
    }

    /// pixel_values: (B, num_channels, image_size, image_size), already normalised (see CLIPImageProcessor).
    public func callAsFunction(_ pixelValues: Tensor) throws -> Output {
        let (last, pooled, hidden) = try vision_model(pixelValues)
        return Output(imageEmbeds: try visual_projection(pooled), lastHiddenState: last, pooled: pooled,
                      hiddenStates: hidden)
    }

    /// Checkpoint keys ignored on load (transformers drops them too).
    public static let ignoredCheckpointKeys = ["vision_model.embeddings.position_ids"]

    /// Strict load that ignores the legacy `position_ids` buffer.
    @discardableResult
    public func loadIgnoringLegacyKeys(from source: StateDictSource) throws -> LoadReport {
        try load(from: source, strict: true, ignoreUnexpected: Self.ignoredCheckpointKeys)
    }

    /// Builds the model from a transformers folder (config.json + model.safetensors / pytorch_model.bin,
    /// or a diffusers pipeline's `image_encoder/`) with uninitialised storage and loads it strictly.
    public static func fromPretrained(_ directory: String) throws -> CLIPVisionModelWithProjection {
        let folder = try DiffusersFolder(directory)
        let model = try ParameterInit.uninitialized { try CLIPVisionModelWithProjection(folder.decodeConfig(Config.self)) }
        try model.loadIgnoringLegacyKeys(from: folder.weights())
        model.eval()
        return model
    }
}

/// transformers ACT2FN for the names CLIP configs use.
public enum CLIPActivation: String, Sendable {
    case quickGelu = "quick_gelu", gelu, geluNew = "gelu_new", geluTanh = "gelu_pytorch_tanh", relu, silu, swish

    public init(_ name: String) throws {
        guard let a = CLIPActivation(rawValue: name) else {
            throw TorchError("CLIPVisionConfig: hidden_act '\(name)' is not supported "
                             + "(quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu, silu)")
        }
        self = a
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        switch self {
        case .quickGelu: return try x.quickGelu()
        case .gelu: return try x.gelu()
        case .geluNew, .geluTanh: return try x.gelu(approximateTanh: true)
        case .relu: return try x.relu()
        case .silu, .swish: return try x.silu()
        }
    }
}

public final class CLIPVisionEmbeddings: Module {
    public let class_embedding: Tensor
    public let patch_embedding: Conv2d
    public let position_embedding: Embedding
    public let patchSize: Int
    public let numPositions: Int

    init(_ c: CLIPVisionModelWithProjection.Config) throws {
        patchSize = c.patch_size
        numPositions = (c.image_size / c.patch_size) * (c.image_size / c.patch_size) + 1
        class_embedding = try makeParameter([c.hidden_size], .normal(std: 1))
        patch_embedding = try Conv2d(c.num_channels, c.hidden_size, kernelSize: c.patch_size, stride: c.patch_size,
                                     bias: false)
        position_embedding = try Embedding(numPositions, c.hidden_size)
    }

    /// (B, C, H, W) → (B, 1 + patches, hidden): [class token, patch tokens] + position embeddings.
    public func callAsFunction(_ pixels: Tensor) throws -> Tensor {
        let b = pixels.shape[0]
        let w = patch_embedding.weight
        let patches = try patch_embedding(pixels.to(w.dtype)).flatten(2).transpose(1, 2)
        let cls = try class_embedding.view([1, 1, -1]).expand([b, 1, class_embedding.shape[0]])
        let tokens = try Tensor.cat([cls, patches], dim: 1)
        guard tokens.shape[1] == numPositions else {
            throw TorchError("CLIPVisionEmbeddings: \(pixels.shape) gives \(tokens.shape[1]) tokens; the position "
                             + "embedding has \(numPositions) (use the configured image_size)")
        }
        return try tokens + position_embedding.weight.unsqueeze(0)
    }
}

/// CLIPAttention (eager): q scaled by head_dim^−0.5, softmax(q kᵀ) v, out_proj; all projections with bias.
public final class CLIPAttention: Module {
    public let k_proj: Linear
    public let v_proj: Linear
    public let q_proj: Linear
    public let out_proj: Linear
    public let heads: Int
    public let headDim: Int

    init(_ c: CLIPVisionModelWithProjection.Config) throws {
        heads = c.num_attention_heads
        headDim = c.hidden_size / c.num_attention_heads
        k_proj = try Linear(c.hidden_size, c.hidden_size)
        v_proj = try Linear(c.hidden_size, c.hidden_size)
        q_proj = try Linear(c.hidden_size, c.hidden_size)
        out_proj = try Linear(c.hidden_size, c.hidden_size)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let b = x.shape[0], l = x.shape[1]
        func split(_ t: Tensor) throws -> Tensor { try t.view([b, l, heads, headDim]).transpose(1, 2) }
        let o = try F.scaledDotProductAttention(split(q_proj(x)), split(k_proj(x)), split(v_proj(x)),
                                                scale: 1.0 / Double(headDim).squareRoot())
        return try out_proj(o.transpose(1, 2).reshape([b, l, heads * headDim]))
    }
}

public final class CLIPMLP: Module {
    public let fc1: Linear
    public let fc2: Linear
    let act: CLIPActivation

    init(_ c: CLIPVisionModelWithProjection.Config) throws {
        act = try CLIPActivation(c.hidden_act)
        fc1 = try Linear(c.hidden_size, c.intermediate_size)
        fc2 = try Linear(c.intermediate_size, c.hidden_size)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try fc2(act(fc1(x))) }
}

/// Pre-LN transformer layer: x + attn(ln1(x)), then x + mlp(ln2(x)).
public final class CLIPEncoderLayer: Module {
    public let self_attn: CLIPAttention
    public let layer_norm1: LayerNorm
    public let mlp: CLIPMLP
    public let layer_norm2: LayerNorm

    init(_ c: CLIPVisionModelWithProjection.Config) throws {
        self_attn = try CLIPAttention(c)
        layer_norm1 = try LayerNorm(c.hidden_size, eps: c.layer_norm_eps)
        mlp = try CLIPMLP(c)
        layer_norm2 = try LayerNorm(c.hidden_size, eps: c.layer_norm_eps)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let h = try x + self_attn(layer_norm1(x))
        return try h + mlp(layer_norm2(h))
    }
}

public final class CLIPEncoder: Module {
    public let layers: [CLIPEncoderLayer]

    init(_ c: CLIPVisionModelWithProjection.Config) throws {
        layers = try (0..<c.num_hidden_layers).map { _ in try CLIPEncoderLayer(c) }
    }
}

public final class CLIPVisionTransformer: Module {
    public let embeddings: CLIPVisionEmbeddings
    public let pre_layrnorm: LayerNorm
    public let encoder: CLIPEncoder
    public let post_layernorm: LayerNorm

    init(_ c: CLIPVisionModelWithProjection.Config) throws {
        embeddings = try CLIPVisionEmbeddings(c)
        pre_layrnorm = try LayerNorm(c.hidden_size, eps: c.layer_norm_eps)
        encoder = try CLIPEncoder(c)
        post_layernorm = try LayerNorm(c.hidden_size, eps: c.layer_norm_eps)
    }

    /// (last_hidden_state, pooled, hidden_states).
    public func callAsFunction(_ pixels: Tensor) throws -> (Tensor, Tensor, [Tensor]) {
        var h = try pre_layrnorm(embeddings(pixels))
        var hidden = [h]
        for layer in encoder.layers {
            h = try layer(h)
            hidden.append(h)
        }
        let pooled = try post_layernorm(h.select(1, 0))
        return (h, pooled, hidden)
    }
}

/// transformers CLIPImageProcessor defaults on float images: resize the shortest side to 224
/// (bicubic, antialiased like PIL), center crop 224×224, normalise with the CLIP mean/std.
public struct CLIPImageProcessor: Sendable {
    public var shortestEdge = 224
    public var cropSize = 224
    public var mean: [Double] = [0.48145466, 0.4578275, 0.40821073]
    public var std: [Double] = [0.26862954, 0.26130258, 0.27577711]

    public init() {}

    /// images: (B, 3, H, W) float in [0, 1] (what CLIPImageProcessor sees after its 1/255 rescale)
    /// → (B, 3, cropSize, cropSize) pixel_values.
    public func callAsFunction(_ images: Tensor) throws -> Tensor {
        guard images.dim == 4, images.shape[1] == mean.count else {
            throw TorchError("CLIPImageProcessor: expected (B, \(mean.count), H, W) images, got \(images.shape)")
        }
        let h = images.shape[2], w = images.shape[3]
        let (short, long) = w <= h ? (w, h) : (h, w)
        // transformers: new_long = int(size * long / short) (truncating).
        let newLong = Int(Double(shortestEdge) * Double(long) / Double(short))
        let (outH, outW) = w <= h ? (newLong, shortestEdge) : (shortestEdge, newLong)
        var x = try images.dtype == .float32 || images.dtype == .float64 ? images : images.to(.float32)
        if (outH, outW) != (h, w) {
            // PIL works on uint8, so its output is clipped to the valid range.
            x = try F.interpolate(x, size: (outH, outW), mode: .bicubic, alignCorners: false, antialias: true)
                .clamp(min: 0, max: 1)
        }
        let top = max(0, (outH - cropSize) / 2), left = max(0, (outW - cropSize) / 2)
        guard outH >= cropSize, outW >= cropSize else {
            throw TorchError("CLIPImageProcessor: resized image \(outH)×\(outW) is smaller than the crop \(cropSize)")
        }
        x = try x.narrow(2, start: top, length: cropSize).narrow(3, start: left, length: cropSize)
        let m = try Tensor(mean.map { Float($0) }, shape: [1, mean.count, 1, 1]).to(x.device, x.dtype)
        let s = try Tensor(std.map { Float($0) }, shape: [1, std.count, 1, 1]).to(x.device, x.dtype)
        return try ((x - m) / s).contiguous()
    }
}
