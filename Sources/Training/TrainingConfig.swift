// TrainingConfig.swift — the training config, nested like the reference YAML configs
// (Moore-AnimateAnyone / PersonaLive `configs/train/stage*.yaml`, diffusers argument names):
// `model`, `data`, `solver`, `validation`, `checkpointing` and a stage-specific section.
import Foundation
import Inference
import NN

public struct SolverSection: Codable, Sendable, Equatable {
    public var learning_rate: Double = 1e-5
    public var scale_lr: Bool = false
    public var lr_scheduler: String = "constant"
    public var lr_warmup_steps: Int = 0
    public var lr_num_cycles: Double = 0.5
    public var max_train_steps: Int = 1000
    public var gradient_accumulation_steps: Int = 1
    public var max_grad_norm: Double = 1.0
    public var adam_beta1: Double = 0.9
    public var adam_beta2: Double = 0.999
    public var adam_weight_decay: Double = 1e-2
    public var adam_epsilon: Double = 1e-8
    /// torch.optim.AdamW(fused=True): one fused kernel per step instead of ~7 ops per parameter, where
    /// the LibTorch has it (2.4 and later); the same update. false: the per-parameter loop.
    public var adam_fused: Bool = true
    public var use_ema: Bool = false
    public var ema_decay: Double = 0.9999
    public var ema_min_decay: Double = 0
    public var ema_update_after_step: Int = 0
    public var device: String = "cpu"
    /// Dtype of frozen modules on CUDA ("fp32", "fp16", "bf16"); CPU always runs fp32.
    public var weight_dtype: String = "fp32"
    public var threads: Int?
    /// Data parallelism: BatchNorm layers of the trained modules use the statistics of the whole
    /// batch over every rank (torch.nn.SyncBatchNorm.convert_sync_batchnorm). Off, as in the
    /// reference's accelerate runs: each rank normalises with its own batch.
    public var sync_batchnorm: Bool = false

    static let keys = ["learning_rate", "scale_lr", "lr_scheduler", "lr_warmup_steps", "lr_num_cycles",
                       "max_train_steps", "gradient_accumulation_steps", "max_grad_norm", "adam_beta1", "adam_beta2",
                       "adam_weight_decay", "adam_epsilon", "adam_fused", "use_ema", "ema_decay", "ema_min_decay",
                       "ema_update_after_step", "device", "weight_dtype", "threads", "sync_batchnorm"]

    public init() {}

    enum K: String, CodingKey {
        case learning_rate, scale_lr, lr_scheduler, lr_warmup_steps, lr_num_cycles, max_train_steps,
             gradient_accumulation_steps, max_grad_norm, adam_beta1, adam_beta2, adam_weight_decay, adam_epsilon,
             adam_fused, use_ema, ema_decay, ema_min_decay, ema_update_after_step, device, weight_dtype, threads, sync_batchnorm
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(Self.keys)
        let c = try decoder.container(keyedBy: K.self)
        let d = SolverSection()
        learning_rate = try c.value(.learning_rate, default: d.learning_rate)
        scale_lr = try c.value(.scale_lr, default: d.scale_lr)
        lr_scheduler = try c.value(.lr_scheduler, default: d.lr_scheduler)
        lr_warmup_steps = try c.value(.lr_warmup_steps, default: d.lr_warmup_steps)
        lr_num_cycles = try c.value(.lr_num_cycles, default: d.lr_num_cycles)
        max_train_steps = try c.value(.max_train_steps, default: d.max_train_steps)
        gradient_accumulation_steps = try c.value(.gradient_accumulation_steps, default: d.gradient_accumulation_steps)
        max_grad_norm = try c.value(.max_grad_norm, default: d.max_grad_norm)
        adam_beta1 = try c.value(.adam_beta1, default: d.adam_beta1)
        adam_beta2 = try c.value(.adam_beta2, default: d.adam_beta2)
        adam_weight_decay = try c.value(.adam_weight_decay, default: d.adam_weight_decay)
        adam_epsilon = try c.value(.adam_epsilon, default: d.adam_epsilon)
        adam_fused = try c.value(.adam_fused, default: d.adam_fused)
        use_ema = try c.value(.use_ema, default: d.use_ema)
        ema_decay = try c.value(.ema_decay, default: d.ema_decay)
        ema_min_decay = try c.value(.ema_min_decay, default: d.ema_min_decay)
        ema_update_after_step = try c.value(.ema_update_after_step, default: d.ema_update_after_step)
        device = try c.value(.device, default: d.device)
        weight_dtype = try c.value(.weight_dtype, default: d.weight_dtype)
        threads = try c.value(.threads, default: nil)
        sync_batchnorm = try c.value(.sync_batchnorm, default: d.sync_batchnorm)
    }
}

public struct DataSection: Codable, Sendable, Equatable {
    public var dataset: String = ""
    public var train_bs: Int = 1
    public var val_bs: Int = 1
    public var prefetch: Int = 2
    /// Stage 1/2: minimum frame distance between reference and target.
    public var sample_margin: Int = 30
    /// Stage 3: frames per sample and their stride.
    public var n_sample_frames: Int = 16
    public var sample_rate: Int = 1
    /// Use the dataset's ground-truth keypoints instead of the motion extractor (synthetic data).
    public var use_gt_keypoints: Bool = false
    /// Colour jitter of the motion encoder's face crop: [brightness, contrast, saturation]
    /// strengths as torchvision's ColorJitter (the crop must carry motion, not appearance).
    public var color_jitter: [Double] = [0.2, 0.2, 0.2]
    /// Stage 1 and the unet stage: encode every frame once with the frozen VAE (and CLIP image
    /// encoder and motion extractor) before training instead of at every step (diffusers'
    /// `cache_latents`). The features are held in memory.
    public var cache_latents: Bool = false

    static let keys = ["dataset", "train_bs", "val_bs", "prefetch", "sample_margin", "n_sample_frames", "sample_rate",
                       "use_gt_keypoints", "color_jitter", "cache_latents"]
    public init() {}
    enum K: String, CodingKey {
        case dataset, train_bs, val_bs, prefetch, sample_margin, n_sample_frames, sample_rate, use_gt_keypoints,
             color_jitter, cache_latents
    }
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(Self.keys)
        let c = try decoder.container(keyedBy: K.self)
        let d = DataSection()
        dataset = try c.value(.dataset, default: d.dataset)
        train_bs = try c.value(.train_bs, default: d.train_bs)
        val_bs = try c.value(.val_bs, default: d.val_bs)
        prefetch = try c.value(.prefetch, default: d.prefetch)
        sample_margin = try c.value(.sample_margin, default: d.sample_margin)
        n_sample_frames = try c.value(.n_sample_frames, default: d.n_sample_frames)
        sample_rate = try c.value(.sample_rate, default: d.sample_rate)
        use_gt_keypoints = try c.value(.use_gt_keypoints, default: d.use_gt_keypoints)
        color_jitter = try c.value(.color_jitter, default: d.color_jitter)
        cache_latents = try c.value(.cache_latents, default: d.cache_latents)
    }
}

public struct ValidationSection: Codable, Sendable, Equatable {
    public var validation_steps: Int = 100
    public var num_samples: Int = 4
    public var num_inference_steps: Int = 20
    public var seed: UInt64 = 42
    /// Frames of one val clip (spread over the whole clip) that the stage animates from the clip's
    /// reference frame, written as an mp4 and a PNG strip (stage 1); 0 turns it off.
    public var num_frames: Int = 16
    /// Classifier-free guidance of the validation samples, as diffusers pipelines take it:
    /// ε = ε_uncond + scale·(ε_cond − ε_uncond); 1 = no guidance. The stage says what the
    /// unconditional branch drops (its training-time condition dropout).
    public var guidance_scale: Double = 1

    static let keys = ["validation_steps", "num_samples", "num_inference_steps", "seed", "num_frames", "guidance_scale"]
    public init() {}
    enum K: String, CodingKey { case validation_steps, num_samples, num_inference_steps, seed, num_frames, guidance_scale }
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(Self.keys)
        let c = try decoder.container(keyedBy: K.self)
        let d = ValidationSection()
        validation_steps = try c.value(.validation_steps, default: d.validation_steps)
        num_samples = try c.value(.num_samples, default: d.num_samples)
        num_inference_steps = try c.value(.num_inference_steps, default: d.num_inference_steps)
        seed = try c.value(.seed, default: d.seed)
        num_frames = try c.value(.num_frames, default: d.num_frames)
        guidance_scale = try c.value(.guidance_scale, default: d.guidance_scale)
    }
}

public struct CheckpointingSection: Codable, Sendable, Equatable {
    public var checkpointing_steps: Int = 500
    public var keep_last: Int = 3
    public var output_dir: String = "Checkpoints"

    static let keys = ["checkpointing_steps", "keep_last", "output_dir"]
    public init() {}
    enum K: String, CodingKey { case checkpointing_steps, keep_last, output_dir }
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(Self.keys)
        let c = try decoder.container(keyedBy: K.self)
        let d = CheckpointingSection()
        checkpointing_steps = try c.value(.checkpointing_steps, default: d.checkpointing_steps)
        keep_last = try c.value(.keep_last, default: d.keep_last)
        output_dir = try c.value(.output_dir, default: d.output_dir)
    }
}

/// The whole config. `model` and the stage section (named like the stage) are decoded strictly by
/// the stage itself, since their fields differ per stage.
public struct TrainingConfig: Codable, Sendable, Equatable {
    public var stage: String
    public var run_name: String
    public var seed: UInt64 = 42
    public var output_dir: String = "Experiments"
    public var model: JSONValue = .object([:])
    public var data = DataSection()
    public var solver = SolverSection()
    public var validation = ValidationSection()
    public var checkpointing = CheckpointingSection()
    /// Parameters to keep frozen, per saved module: `{reference_unet: ["up_blocks.3.*"]}` (globs over
    /// the module's own keys, `*` matching dots too), like the reference scripts' name filters.
    public var freeze: [String: [String]] = [:]
    /// The stage-specific section (`stage1:`, `vae:`, `motion_extractor:` …).
    public var stageSection: JSONValue = .object([:])
    /// Where the config was read from (paths inside it are relative to the working directory).
    public var sourcePath: String = ""
    /// Data-parallel shard of this process (not part of the file): rank `rank` of `worldSize`
    /// draws the train batches rank, rank + worldSize, … of the one deterministic stream.
    public var rank = 0
    public var worldSize = 1

    public static let stages = ["vae", "motion_extractor", "unet", "stage1", "stage2", "stage3"]
    static let keys = ["stage", "run_name", "seed", "output_dir", "model", "data", "solver", "validation", "checkpointing",
                       "freeze"] + stages

    enum K: String, CodingKey { case stage, run_name, seed, output_dir, model, data, solver, validation, checkpointing, freeze }

    public init(stage: String, run_name: String) {
        self.stage = stage
        self.run_name = run_name
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(Self.keys)
        let c = try decoder.container(keyedBy: K.self)
        stage = try c.decode(String.self, forKey: .stage)
        guard Self.stages.contains(stage) else {
            let hint = closestKey(to: stage, in: Self.stages).map { " (did you mean '\($0)'?)" } ?? ""
            throw DecodingError.dataCorruptedError(forKey: .stage, in: c,
                debugDescription: "unknown stage '\(stage)'\(hint); known: \(Self.stages.joined(separator: ", "))")
        }
        run_name = try c.decode(String.self, forKey: .run_name)
        seed = try c.value(.seed, default: 42)
        output_dir = try c.value(.output_dir, default: "Experiments")
        model = try c.value(.model, default: .object([:]))
        data = try c.value(.data, default: DataSection())
        solver = try c.value(.solver, default: SolverSection())
        validation = try c.value(.validation, default: ValidationSection())
        checkpointing = try c.value(.checkpointing, default: CheckpointingSection())
        freeze = try c.value(.freeze, default: [:])
        let any = try decoder.container(keyedBy: AnyCodingKey.self)
        stageSection = try any.decodeIfPresent(JSONValue.self, forKey: AnyCodingKey(stage)) ?? .object([:])
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: AnyCodingKey.self)
        try c.encode(stage, forKey: AnyCodingKey("stage"))
        try c.encode(run_name, forKey: AnyCodingKey("run_name"))
        try c.encode(seed, forKey: AnyCodingKey("seed"))
        try c.encode(output_dir, forKey: AnyCodingKey("output_dir"))
        try c.encode(model, forKey: AnyCodingKey("model"))
        try c.encode(data, forKey: AnyCodingKey("data"))
        try c.encode(solver, forKey: AnyCodingKey("solver"))
        try c.encode(validation, forKey: AnyCodingKey("validation"))
        try c.encode(checkpointing, forKey: AnyCodingKey("checkpointing"))
        if !freeze.isEmpty { try c.encode(freeze, forKey: AnyCodingKey("freeze")) }
        try c.encode(stageSection, forKey: AnyCodingKey(stage))
    }

    /// Reads a config. `model:` may name a model file (e.g. `Configs/tiny/model.yaml`, relative to
    /// the working directory or to this file) instead of holding the mapping; it is read in place,
    /// so the resolved config saved with a run is self-contained.
    public static func load(path: String) throws -> TrainingConfig {
        var config = try ConfigLoader.load(TrainingConfig.self, path: path)
        config.sourcePath = path
        if case .string(let modelPath) = config.model {
            let beside = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(modelPath).path
            let resolved = FileManager.default.fileExists(atPath: modelPath) ? modelPath : beside
            guard FileManager.default.fileExists(atPath: resolved) else {
                throw ConfigError(file: path, "model: file not found: \(modelPath)")
            }
            config.model = try ConfigLoader.load(JSONValue.self, path: resolved)
        }
        return config
    }

    /// The resolved config as YAML (what the run used).
    public func yaml() throws -> String { try YAMLText.encode(self) }

    /// A stable digest of the resolved config (FNV-1a of its YAML).
    public func digest() throws -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in try yaml().utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(format: "%016llx", h)
    }
}
