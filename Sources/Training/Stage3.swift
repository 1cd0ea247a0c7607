// Stage3.swift — stage 3 of PersonaLive, sliding streaming training of the temporal modules
// (train_stage3.py of the PersonaLive fork + configs/train/personalive_stage3.yaml, paper
// Algorithm 2). Starting from a stage-2 checkpoint, only the denoiser's `temporal_modules` train
// (and the discriminator); the reference UNet, pose guider, motion encoder (eval mode), the rest of
// the denoiser, VAE, CLIP and motion extractor are frozen. One trainer step is one clip, as the
// script's global_step counts clips: n_sample_frames frames every sample_rate frames and a
// reference frame anywhere in the clip; its conditions are computed once without gradient;
// SlidingWindowStep slides the 16-frame window over it and each gradient slide (0, 3, 6 for 40
// frames) decodes x̂0 of all 16 frames and takes the stage-2 loss mix (MSE + masked MSE +
// λ·LPIPS + λ·adversarial from `adv_start`, reference 0) → one generator step, then a
// discriminator step once more than `d_start` clips were taken (reference 50): 3 of each per clip.
// Checkpoints hold `temporal_module.safetensors` (the released temporal_module.pth key names) and
// the discriminator; the frozen networks come from the stage-2 checkpoint the config names.
import Data
import Foundation
import Inference
import Logging
import Media
import Models
import NN
import Torch

public struct Stage3Section: Codable, Sendable {
    /// The stage-2 checkpoint folder the frozen networks come from (denoising_unet, reference_unet,
    /// pose_guider, motion_encoder, discriminator .safetensors and its config.yaml).
    public var stage2_checkpoint: String = ""
    /// Temporal-module initialisation: our temporal_module.safetensors (or a checkpoint folder
    /// holding it), the released temporal_module.pth, or an AnimateDiff / X-NeMo motion-module file
    /// (motion_modules. renamed to temporal_modules.); empty = fresh (the constructor's init).
    public var temporal_module_path: String = ""
    /// Discriminator weights; empty = the stage-2 checkpoint's discriminator.safetensors (the
    /// reference's discriminator_path is the stage-2 output), fresh when it has none.
    public var discriminator_path: String = ""
    public var vae_checkpoint: String = ""
    public var motion_extractor_checkpoint: String = ""
    /// CLIP weights; empty = the image_encoder.safetensors saved along the stage-1/2 checkpoints.
    public var image_encoder_path: String = ""
    public var lpips_path: [String] = []
    public var discriminator = StyleGAN2Discriminator.Config()
    public var image_size: Int = 512
    public var motion_encoder_size: Int = 224
    public var motion_extractor_size: Int = 256
    public var keypoint_radius: Int = 0
    /// Latent scaling factor; ≤ 0 takes the one the stage-2 checkpoint recorded.
    public var latent_scale: Double = 0.18215
    /// Frames per VAE encode / decode call (the script's max_batch_frames).
    public var max_batch_frames: Int = 10
    /// Frames per chunk M (temporal_window_size) and chunks per window (temporal_adaptive_step,
    /// which must equal the number of timesteps).
    public var temporal_window_size: Int = 4
    public var temporal_adaptive_step: Int = 4
    public var uncond_ratio: Double = 0.1
    public var pose_drop_prob: Double = 0.1
    public var motion_drop_prob: Double = 0.1
    public var bank_drop_ratio: Double = 0.3
    public var timesteps_list: [Int] = [999, 666, 333, 0]
    public var mse_weight: Double = 1
    public var local_weight: Double = 1
    public var lpips_weight: Double = 2
    public var adv_weight: Double = 0.05
    /// The adversarial term counts from clip `adv_start` on (reference: from the start, 0).
    public var adv_start: Int = 0
    /// The discriminator steps once more than `d_start` clips were taken (reference 50).
    public var d_start: Int = 50
    public var discriminator_lr_scale: Double = 2
    /// Per-optimizer overrides of the solver section: `generator`, `discriminator`.
    public var optimizers: [String: OptimizerSection] = [:]
    static let optimizerNames = ["generator", "discriminator"]
    public var scheduler: DDIMScheduler.Config = Stage1Section.defaultScheduler

    enum K: String, CodingKey, CaseIterable {
        case stage2_checkpoint, temporal_module_path, discriminator_path, vae_checkpoint, motion_extractor_checkpoint,
             image_encoder_path, lpips_path, discriminator, image_size, motion_encoder_size, motion_extractor_size,
             keypoint_radius, latent_scale, max_batch_frames, temporal_window_size, temporal_adaptive_step, uncond_ratio,
             pose_drop_prob, motion_drop_prob, bank_drop_ratio, timesteps_list, mse_weight, local_weight, lpips_weight,
             adv_weight, adv_start, d_start, discriminator_lr_scale, optimizers, scheduler
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: K.self)
        let d = Stage3Section()
        stage2_checkpoint = try c.value(.stage2_checkpoint, default: d.stage2_checkpoint)
        temporal_module_path = try c.value(.temporal_module_path, default: d.temporal_module_path)
        discriminator_path = try c.value(.discriminator_path, default: d.discriminator_path)
        vae_checkpoint = try c.value(.vae_checkpoint, default: d.vae_checkpoint)
        motion_extractor_checkpoint = try c.value(.motion_extractor_checkpoint, default: d.motion_extractor_checkpoint)
        image_encoder_path = try c.value(.image_encoder_path, default: d.image_encoder_path)
        lpips_path = try c.value(.lpips_path, default: d.lpips_path)
        discriminator = try c.value(.discriminator, default: d.discriminator)
        image_size = try c.positive(.image_size, default: d.image_size)
        motion_encoder_size = try c.positive(.motion_encoder_size, default: d.motion_encoder_size)
        motion_extractor_size = try c.positive(.motion_extractor_size, default: d.motion_extractor_size)
        keypoint_radius = try c.nonNegative(.keypoint_radius, default: d.keypoint_radius)
        latent_scale = try c.value(.latent_scale, default: d.latent_scale)
        max_batch_frames = try c.positive(.max_batch_frames, default: d.max_batch_frames)
        temporal_window_size = try c.positive(.temporal_window_size, default: d.temporal_window_size)
        temporal_adaptive_step = try c.positive(.temporal_adaptive_step, default: d.temporal_adaptive_step)
        uncond_ratio = try c.nonNegative(.uncond_ratio, default: d.uncond_ratio)
        pose_drop_prob = try c.nonNegative(.pose_drop_prob, default: d.pose_drop_prob)
        motion_drop_prob = try c.nonNegative(.motion_drop_prob, default: d.motion_drop_prob)
        bank_drop_ratio = try c.nonNegative(.bank_drop_ratio, default: d.bank_drop_ratio)
        timesteps_list = try c.value(.timesteps_list, default: d.timesteps_list)
        guard timesteps_list.count >= 2, zip(timesteps_list, timesteps_list.dropFirst()).allSatisfy({ $0 > $1 }),
              timesteps_list.allSatisfy({ (0..<1000).contains($0) }) else {
            throw DecodingError.dataCorruptedError(
                forKey: .timesteps_list, in: c,
                debugDescription: "expected at least two decreasing timesteps in 0...999 (reference: [999, 666, 333, 0]), got \(timesteps_list)")
        }
        guard temporal_adaptive_step == timesteps_list.count else {
            throw DecodingError.dataCorruptedError(
                forKey: .temporal_adaptive_step, in: c,
                debugDescription: "expected the number of timesteps_list entries (\(timesteps_list.count): one chunk per noise level), got \(temporal_adaptive_step)")
        }
        mse_weight = try c.nonNegative(.mse_weight, default: d.mse_weight)
        local_weight = try c.nonNegative(.local_weight, default: d.local_weight)
        lpips_weight = try c.nonNegative(.lpips_weight, default: d.lpips_weight)
        try c.checkLPIPS(weight: lpips_weight, paths: lpips_path, key: .lpips_weight)
        adv_weight = try c.nonNegative(.adv_weight, default: d.adv_weight)
        adv_start = try c.nonNegative(.adv_start, default: d.adv_start)
        d_start = try c.nonNegative(.d_start, default: d.d_start)
        discriminator_lr_scale = try c.nonNegative(.discriminator_lr_scale, default: d.discriminator_lr_scale)
        optimizers = try c.optimizerOverrides(.optimizers, default: d.optimizers, names: Self.optimizerNames, stage: "stage 3")
        scheduler = try c.value(.scheduler, default: d.scheduler)
    }

    public var renderRadius: Int { keypoint_radius > 0 ? keypoint_radius : Keypoints.renderRadius(canvasSize: image_size) }
}

/// Temporal-module weights into a denoiser (our file, the released .pth, an AnimateDiff file).
public enum TemporalModuleInit {
    /// Loads `path` strictly into `unet`'s temporal modules; returns a line for the log.
    public static func load(_ path: String, into unet: UNet3DConditionModel) throws -> String {
        guard FileManager.default.fileExists(atPath: path) else {
            throw TrainingError.invalid("stage3.temporal_module_path: \(path) does not exist (expected temporal_module.safetensors, "
                                        + "temporal_module.pth or an AnimateDiff motion-module file)")
        }
        var source = try CheckpointModules.weights(path, files: ["temporal_module.safetensors"])
        for w in ["state_dict.", "module.", "model."] where source.keys.allSatisfy({ $0.hasPrefix(w) }) {
            source = RenamedStateDictSource(source, currentToSource: Dictionary(uniqueKeysWithValues: source.keys.map {
                (String($0.dropFirst(w.count)), $0)
            }))
        }
        let keys = source.keys
        var allow: [String] = [], ignore: [String] = []
        var note = "temporal_modules keys"
        if !keys.contains(where: { $0.contains("temporal_modules.") }) {
            guard keys.contains(where: { $0.contains("motion_modules.") }) else {
                throw TrainingError.invalid("stage3.temporal_module_path: \(path) holds neither temporal_modules. nor motion_modules. keys")
            }
            // AnimateDiff / X-NeMo layout, renamed as from_pretrained_2d does; its pe tables are
            // dropped (the constructor's sinusoidal tables are kept).
            var map: [String: String] = [:]
            for k in keys where k.contains("motion_modules.") && !k.hasSuffix("pos_encoder.pe") {
                map[k.replacingOccurrences(of: "motion_modules.", with: "temporal_modules.")] = k
            }
            source = RenamedStateDictSource(source, currentToSource: map)
            allow = ["*temporal_modules.*pos_encoder.pe"]
            ignore = ["*motion_modules.*pos_encoder.pe"]
            note = "AnimateDiff / X-NeMo layout, motion_modules. renamed to temporal_modules."
        }
        do {
            let report = try unet.temporalModuleSubset.load(from: source, allowMissing: allow, ignoreUnexpected: ignore)
            return "temporal modules initialised from \(path) (\(note); \(report))"
        } catch {
            throw TrainingError.invalid("stage3.temporal_module_path: \(path) does not fit the denoiser's temporal modules: \(error)")
        }
    }
}

public final class Stage3: TrainingStage {
    let config: TrainingConfig
    public let precision: Precision
    public let section: Stage3Section
    let denoiser: UNet3DConditionModel
    let reference: UNet2DConditionModel
    let poseGuider: PoseGuider
    let motionEncoder: MotionEncoder
    let control: ReferenceAttentionControl
    /// The denoiser's temporal modules under their full key names (temporal_module.safetensors).
    let temporal: StateDictSubsetModule
    let discriminator: StyleGAN2Discriminator
    let lpips: LPIPS?
    let vae: AutoencoderKL
    let imageEncoder: CLIPVisionModelWithProjection
    let clipProcessor: CLIPImageProcessor
    let motionExtractor: MotionExtractor?
    let step: SlidingWindowStep
    let feed: SequenceFeed
    let valFeed: SequenceFeed
    let useGT: Bool
    let latentScale: Double
    /// Clips of the train split left out for being shorter than n_sample_frames.
    public let skippedClips: [(id: String, frames: Int)]
    /// Called after each gradient slide's optimizer steps with (clip step, slide); tests use it to
    /// interrupt a run in the middle of a clip.
    public var afterGradientSlide: ((Int, Int) -> Void)?
    let logger: Logger

    public var batchSize: Int { config.data.train_bs }
    public var dataWaitSeconds: Double { feed.waitSeconds }

    public init(config: TrainingConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        precision = try Precision(solver: config.solver, logger: logger)
        let file = config.sourcePath
        let section = try ConfigLoader.section(Stage3Section.self, config.stageSection, name: "stage3", file: file)
        self.section = section
        useGT = config.data.use_gt_keypoints
        let frames = config.data.n_sample_frames
        let m = section.temporal_window_size, window = m * section.timesteps_list.count
        guard frames % m == 0, frames >= window else {
            throw TrainingError.invalid("\(file): data.n_sample_frames must be a multiple of stage3.temporal_window_size (\(m)) "
                                        + "and at least one window (\(window) frames); got \(frames) (reference: 40)")
        }

        // The stage-2 run: its networks, latent scale and the checkpoints it names.
        guard !section.stage2_checkpoint.isEmpty else { throw TrainingError.invalid("\(file): stage3.stage2_checkpoint is required") }
        let s2URL = URL(fileURLWithPath: section.stage2_checkpoint)
        let s2ConfigPath = s2URL.appendingPathComponent("config.yaml").path
        guard FileManager.default.fileExists(atPath: s2ConfigPath) else {
            throw TrainingError.invalid("stage3.stage2_checkpoint: \(section.stage2_checkpoint) has no config.yaml (expected a checkpoint folder of a stage2 run)")
        }
        let s2 = try TrainingConfig.load(path: s2ConfigPath)
        guard s2.stage == "stage2" || s2.stage == "stage1" else {
            throw TrainingError.invalid("stage3.stage2_checkpoint: \(section.stage2_checkpoint) is a '\(s2.stage)' checkpoint (expected stage2)")
        }
        func part<T: Decodable>(_ t: T.Type, _ key: String) throws -> T {
            try ConfigLoader.section(T.self, config.model[key], name: "model.\(key)", file: file)
        }
        var denoiserConfig = try part(UNet3DConditionModel.Config.self, "denoising_unet")
        denoiserConfig.use_temporal_module = true
        denoiser = try UNet3DConditionModel(denoiserConfig)
        reference = try UNet2DConditionModel(part(UNet2DConditionModel.Config.self, "reference_unet"), withOutputLayers: false)
        poseGuider = try PoseGuider(part(PoseGuider.Config.self, "pose_guider"))
        motionEncoder = try MotionEncoder(part(MotionEncoder.Config.self, "motion_encoder"))
        control = try ReferenceAttentionControl(writer: reference, reader: denoiser, fusionBlocks: "full", roundBankToFP16: true)
        temporal = denoiser.temporalModuleSubset
        func s2File(_ name: String) -> String { s2URL.appendingPathComponent("\(name).safetensors").path }
        for name in ["reference_unet", "pose_guider", "motion_encoder", "denoising_unet"] {
            guard FileManager.default.fileExists(atPath: s2File(name)) else {
                throw TrainingError.invalid("stage3.stage2_checkpoint: \(section.stage2_checkpoint) has no \(name).safetensors")
            }
        }
        try reference.load(from: SafeTensorsSource(path: s2File("reference_unet")))
        try poseGuider.load(from: SafeTensorsSource(path: s2File("pose_guider")))
        try motionEncoder.load(from: SafeTensorsSource(path: s2File("motion_encoder")))
        // A stage-2 denoiser has no temporal modules: they come from temporal_module_path or stay fresh.
        let s2Denoiser = try SafeTensorsSource(path: s2File("denoising_unet"))
        if s2Denoiser.keys.contains(where: { $0.contains("temporal_modules.") }) {
            try denoiser.load(from: s2Denoiser)
        } else {
            try denoiser.load(from: s2Denoiser, allowMissing: ["*temporal_modules.*"])
        }
        if section.temporal_module_path.isEmpty {
            logger.info("temporal modules: fresh (no stage3.temporal_module_path)")
        } else {
            let line = try TemporalModuleInit.load(section.temporal_module_path, into: denoiser)
            logger.info("\(line)")
        }
        logger.info("stage-3 networks initialised from \(section.stage2_checkpoint)")

        // Only the temporal modules train; everything else frozen (reference UNet, pose guider and
        // motion encoder also cast to the weight dtype and in eval mode, as the script does).
        for (name, p) in denoiser.namedParameters() { _ = try p.requiresGrad_(name.contains("temporal_modules")) }
        try precision.placeTrained(denoiser)
        for mod in [reference, poseGuider, motionEncoder] as [Module] { try FrozenNetworks.freeze(mod, precision) }

        discriminator = try StyleGAN2Discriminator(section.discriminator)
        let dPath = section.discriminator_path.isEmpty && FileManager.default.fileExists(atPath: s2File("discriminator"))
            ? s2File("discriminator") : section.discriminator_path
        if !dPath.isEmpty {
            let report = try discriminator.load(from: CheckpointModules.weights(dPath, files: ["discriminator.safetensors"]),
                                                allowMissing: section.discriminator_path.isEmpty ? [] : ["time_embedding.*", "time_emb_proj.*"])
            logger.info("discriminator initialised from \(dPath) (\(report))")
        } else {
            logger.info("discriminator: fresh (no stage3.discriminator_path and none in the stage-2 checkpoint)")
        }
        try precision.placeTrained(discriminator)
        lpips = section.lpips_weight > 0 ? try LPIPS(weights: section.lpips_path) : nil
        if let lpips { try precision.placeFrozen(lpips) }

        // Frozen VAE / motion extractor / CLIP: this section's paths, else the stage-2 run's.
        let s2Section = s2.stageSection
        func inherited(_ own: String, _ key: String) -> String { own.isEmpty ? (s2Section[key]?.string ?? "") : own }
        vae = try FrozenNetworks.vae(config, path: inherited(section.vae_checkpoint, "vae_checkpoint"), section: "stage3",
                                     precision: precision, logger: logger)
        let mePath = inherited(section.motion_extractor_checkpoint, "motion_extractor_checkpoint")
        if !useGT || !mePath.isEmpty {
            motionExtractor = try FrozenNetworks.motionExtractor(path: mePath, section: "stage3", file: file,
                                                                 precision: precision, logger: logger)
        } else {
            motionExtractor = nil
        }
        var clipPath = section.image_encoder_path
        if clipPath.isEmpty {
            // Stage 1 saves its frozen random CLIP; look along the chain of checkpoints.
            var folder: String? = section.stage2_checkpoint
            var seen = Set<String>()
            while let f = folder, !seen.contains(f) {
                seen.insert(f)
                let saved = URL(fileURLWithPath: f).appendingPathComponent("image_encoder.safetensors").path
                if FileManager.default.fileExists(atPath: saved) { clipPath = saved; break }
                let cfgPath = URL(fileURLWithPath: f).appendingPathComponent("config.yaml").path
                guard FileManager.default.fileExists(atPath: cfgPath) else { break }
                let cfg = try TrainingConfig.load(path: cfgPath)
                if let p = cfg.stageSection["image_encoder_path"]?.string, !p.isEmpty { clipPath = CheckpointModules.resolve(p, from: f); break }
                folder = (cfg.stageSection["stage1_checkpoint"]?.string ?? cfg.stageSection["stage2_checkpoint"]?.string)
                    .map { CheckpointModules.resolve($0, from: f) }
            }
            guard !clipPath.isEmpty else {
                throw TrainingError.invalid("\(file): stage3.image_encoder_path is empty and no image_encoder.safetensors was found "
                                            + "along \(section.stage2_checkpoint) and the checkpoints it names")
            }
        }
        (imageEncoder, clipProcessor) = try FrozenNetworks.imageEncoder(config, path: clipPath, section: "stage3",
                                                                        precision: precision, logger: logger)

        if section.latent_scale > 0 {
            latentScale = section.latent_scale
        } else {
            let state = try CheckpointManager.readState(s2URL)
            guard let recorded = state.pipeline?["latent_scale"] else {
                throw TrainingError.invalid("stage3.latent_scale is 0 and \(section.stage2_checkpoint)/trainer_state.json records no pipeline.latent_scale")
            }
            latentScale = recorded
            logger.info("latent scale \(String(format: "%.5f", recorded)) from the stage-2 checkpoint")
        }

        var st = SlidingWindowStep(denoiser: denoiser, reference: reference, control: control,
                                   scheduler: try DDIMScheduler(section.scheduler))
        st.timesteps = section.timesteps_list
        st.chunkFrames = m
        st.bankDropRatio = section.bank_drop_ratio
        step = st

        let ds = try FrozenNetworks.dataset(config, logger: logger)
        func sampler(_ split: String, _ batch: Int, _ seed: UInt64) throws -> SequenceSampler {
            var sc = samplerConfig(config, imageSize: section.image_size, motionEncoderSize: section.motion_encoder_size,
                                   motionExtractorSize: section.motion_extractor_size, split: split, batchSize: batch, seed: seed)
            sc.nSampleFrames = frames
            return try SequenceSampler(dataset: ds, config: sc, minimumFrames: frames)
        }
        let train = try sampler("train", config.data.train_bs, config.seed)
        skippedClips = train.skipped
        if !train.skipped.isEmpty {
            let example = train.skipped[0]
            logger.warning("stage 3: skipped \(train.skipped.count) of \(train.skipped.count + train.clipCount) train clips shorter than n_sample_frames = \(frames) frames (e.g. \(example.id): \(example.frames) frames)")
        } else {
            logger.info("stage 3: \(train.clipCount) train clips, none shorter than \(frames) frames")
        }
        let val = try sampler("val", 1, config.validation.seed)
        if !val.skipped.isEmpty {
            logger.warning("stage 3: skipped \(val.skipped.count) val clips shorter than \(frames) frames")
        }
        feed = try SequenceFeed(sampler: train, prefetch: config.data.prefetch, device: precision.device)
        valFeed = try SequenceFeed(sampler: val, prefetch: 1, device: precision.device)
    }

    public var savedModules: [(String, Module)] { [("temporal_module", temporal), ("discriminator", discriminator)] }

    /// The latent scale the checkpoints were trained with (inference reads it).
    public var pipelineMetadata: [String: Double] { ["latent_scale": latentScale] }

    public var trainableParameters: [(String, Tensor)] {
        savedModules.flatMap { name, m in m.namedParameters().filter { $0.1.requiresGrad }.map { ("\(name).\($0.0)", $0.1) } }
    }

    public func optimizerSpecs(config: TrainingConfig) throws -> [OptimizerSpec] {
        let all = trainableParameters
        var g = OptimizerSpec(name: "generator", parameters: all.filter { !$0.0.hasPrefix("discriminator.") },
                              solver: config.solver, trainBatch: batchSize)
        var d = g
        d.name = "discriminator"
        d.parameters = all.filter { $0.0.hasPrefix("discriminator.") }
        d.learningRate = g.learningRate * section.discriminator_lr_scale
        g = try g.overridden(by: section.optimizers["generator"], from: all, key: "stage3.optimizers.generator")
        d = try d.overridden(by: section.optimizers["discriminator"], from: all, key: "stage3.optimizers.discriminator")
        return [g, d]
    }

    // MARK: conditions (once per clip, no gradient)

    struct ClipConditions {
        let inputs: SlidingWindowInputs
        /// (B, F, 3, S, S) ground-truth frames and (B, F, 3, S, S) pixel masks (face + eyes/mouth).
        let frames: Tensor
        let mask: Tensor
    }

    /// Images (N, 3, S, S) → scaled latents (N, c, h, w), `max_batch_frames` at a time.
    func encodeFrames(_ images: Tensor, sample: Bool, generator: Generator?) throws -> Tensor {
        let n = images.shape[0], chunk = section.max_batch_frames
        let parts = try stride(from: 0, to: n, by: chunk).map {
            try FrozenNetworks.encode(vae, images.narrow(0, start: $0, length: min(chunk, n - $0)), scale: latentScale,
                                      sample: sample, generator: generator, precision: precision)
        }
        return try Tensor.cat(parts, dim: 0)
    }

    /// Keypoints (N, 21, 3) of every frame: ground truth, or read by the frozen motion extractor.
    func keypoints(_ b: SequenceTensors) throws -> Tensor {
        let s = b.frames.shape
        let n = s[0] * s[1]
        if useGT, let pose = b.pose, let kc = b.keypoints {
            let p = try pose.reshape([n, 7]), k = try kc.reshape([n, 21, 3])
            let rot = try Keypoints.rotationMatrix(pitch: p.select(1, 0), yaw: p.select(1, 1), roll: p.select(1, 2))
            let rotated = try k.matmul(rot) * p.narrow(1, start: 6, length: 1).unsqueeze(2)
            let xy = try rotated.narrow(2, start: 0, length: 2) + p.narrow(1, start: 3, length: 2).unsqueeze(1)
            return try Tensor.cat([xy, rotated.narrow(2, start: 2, length: 1)], dim: 2)
        }
        guard let me = motionExtractor else { throw TrainingError.invalid("no motion extractor and no ground truth") }
        let mi = b.motionInput.shape
        return try me(precision.frozenInput(b.motionInput.reshape([n, mi[2], mi[3], mi[4]]))).to(.float32)
    }

    func conditions(_ b: SequenceTensors, sampleLatents: Bool, generator: Generator?) throws -> ClipConditions {
        try Torch.noGrad {
            let s = b.frames.shape
            let (bs, f) = (s[0], s[1])
            let ref = try FrozenNetworks.encode(vae, b.reference, scale: latentScale, sample: sampleLatents,
                                                generator: generator, precision: precision)
            let clip = try FrozenNetworks.clipEmbeds(imageEncoder, clipProcessor, b.reference, precision: precision)
            let flat = try b.frames.reshape([bs * f, s[2], s[3], s[4]])
            let z = try encodeFrames(flat, sample: sampleLatents, generator: generator)
            let target = try z.reshape([bs, f] + Array(z.shape.suffix(3))).permute([0, 2, 1, 3, 4]).contiguous()
            let canvas = try Keypoints.draw(keypoints(b), height: section.image_size, width: section.image_size,
                                            radius: section.renderRadius)
            let video = try canvas.reshape([bs, f, 3, section.image_size, section.image_size]).permute([0, 2, 1, 3, 4])
            let pose = try poseGuider(precision.frozenInput(video)).to(.float32).contiguous()
            let fc = b.faceCrop.shape
            let motion = try motionEncoder(precision.frozenInput(b.faceCrop.reshape([bs * f, fc[2], fc[3], fc[4]]))).to(.float32)
            let mot = try motion.reshape([bs, f] + Array(motion.shape.suffix(2)))
            let mask = try (b.faceMask + b.localMask).expand([bs, f, 3, s[3], s[4]])
            return ClipConditions(inputs: SlidingWindowInputs(referenceLatent: ref, clip: clip, poseFeatures: pose, motion: mot,
                                                              targetLatents: target),
                                  frames: b.frames, mask: mask)
        }
    }

    /// Scaled latents (B, c, W, h, w) → images (B·W, 3, S, S) through the frozen VAE, with gradient
    /// and not clamped (the script decodes x̂0 so for the loss).
    func decodeForLoss(_ latents: Tensor) throws -> Tensor {
        let s = latents.shape
        let flat = try latents.permute([0, 2, 1, 3, 4]).reshape([s[0] * s[2], s[1], s[3], s[4]])
        let chunk = section.max_batch_frames, n = flat.shape[0]
        let parts = try stride(from: 0, to: n, by: chunk).map {
            try vae.decode(precision.frozenInput(flat.narrow(0, start: $0, length: min(chunk, n - $0)) / latentScale)).to(.float32)
        }
        return try Tensor.cat(parts, dim: 0)
    }

    /// The window's frames (B·W, 3, S, S) of a (B, F, 3, S, S) clip tensor.
    func window(_ t: Tensor, start: Int, length: Int) throws -> Tensor {
        let s = t.shape
        return try t.narrow(1, start: start, length: length).reshape([s[0] * length, s[2], s[3], s[4]])
    }

    // MARK: training

    public func iterate(_ context: StepContext, sample: Int, generator: Generator) throws {
        let t0 = Date()
        let b = try feed.batch(sample / batchSize)
        let cond = try conditions(b, sampleLatents: true, generator: generator)
        let tConditions = Date().timeIntervalSince(t0)
        var tDecode = 0.0, tBackward = 0.0, tDiscriminator = 0.0
        let target = cond.inputs.targetLatents
        // Draws in the script's order: the initial noise, then the uncond, motion and pose flags.
        let noise = try Tensor.randn(target.shape, generator: generator, device: target.device)
        let u = try Tensor.rand([3], generator: generator).toArray(Float.self)
        var inputs = cond.inputs
        let draws = SlidingWindowDraws(noiseInit: noise, uncond: Double(u[0]) < section.uncond_ratio,
                                       dropPose: Double(u[2]) < section.pose_drop_prob,
                                       dropMotion: Double(u[1]) < section.motion_drop_prob)
        inputs.targetLatents = target
        let adversarial = context.step >= section.adv_start && section.adv_weight > 0
        let trainD = context.step > section.d_start
        var sums: [String: Double] = [:]
        var slides = 0
        try step(inputs, draws: draws, generator: generator) { g in
            let w = g.x0.shape[2]
            let x = try window(cond.frames, start: g.start, length: w)
            let mask = try window(cond.mask, start: g.start, length: w)
            let bs = g.x0.shape[0]
            let t = bs == 1 ? g.timesteps : try g.timesteps.unsqueeze(0).expand([bs, w]).reshape([bs * w])
            // The generator's loss with the discriminator frozen, backward, and its step.
            let (terms, xHat) = try context.only("generator") { () throws -> ([String: Tensor], Tensor) in
                let td = Date()
                let xHat = try decodeForLoss(g.x0)
                tDecode += Date().timeIntervalSince(td)
                let mse = try F.mseLoss(xHat, x)
                let local = try F.mseLoss(xHat * mask, x * mask)
                var total = try mse * section.mse_weight + local * section.local_weight
                var terms = ["loss_mse": mse, "loss_local": local]
                if let lpips {
                    let p = try lpips(xHat, x).mean()
                    terms["loss_lpips"] = p
                    total = try total + p * section.lpips_weight
                }
                if adversarial {
                    let adv = try discriminator.generatorLoss(fake: xHat, timesteps: t)
                    terms["loss_adv"] = adv
                    total = try total + adv * section.adv_weight
                }
                terms["loss"] = total
                let tb = Date()
                try context.backward(total, for: "generator")
                tBackward += Date().timeIntervalSince(tb)
                return (terms, xHat)
            }
            try context.step("generator")
            var all = terms
            let tD = Date()
            defer { tDiscriminator += Date().timeIntervalSince(tD) }
            if trainD {
                let dLoss = try context.only("discriminator") {
                    try discriminator.discriminatorLoss(fake: xHat.detach(), real: x, timesteps: t)
                }
                all["loss_d"] = dLoss
                try context.backward(dLoss, for: "discriminator")
                try context.step("discriminator")
            }
            for (k, v) in all {
                let value = try v.detach().item()
                guard value.isFinite else { throw TrainingError.nonFinite(step: context.step + 1, term: k, value: value) }
                sums[k, default: 0] += value
            }
            slides += 1
            afterGradientSlide?(context.step, g.index)
        }
        logger.debug("stage 3 clip: \(String(format: "%.2f", Date().timeIntervalSince(t0))) s (conditions \(String(format: "%.2f", tConditions)), decode \(String(format: "%.2f", tDecode)), generator backward \(String(format: "%.2f", tBackward)), discriminator \(String(format: "%.2f", tDiscriminator)))")
        // The clip's loss terms: means over its gradient slides.
        var means: [String: Tensor] = [:]
        for (k, v) in sums { means[k] = try Tensor.full([1], v / Double(max(slides, 1))) }
        means["optimizer_steps"] = try Tensor.full([1], Double(slides))
        try context.record(means)
    }

    // MARK: validation

    /// One fixed val clip through Algorithm 2 without gradient (fixed noise, no dropout): the
    /// emitted chunks' latent MSE against the ground truth, their decoded pixel MSE, and the mean
    /// frame-to-frame difference of the generated frames next to the ground truth's (its error is
    /// the temporal-consistency figure); a strip of ground truth over generated frames.
    public func validate(step stepIndex: Int, directory: URL, logger: Logger) throws -> [String: Double] {
        let b = try valFeed.batch(0)
        let cond = try conditions(b, sampleLatents: false, generator: nil)
        let target = cond.inputs.targetLatents
        let noise = try Tensor.randn(target.shape, generator: Generator(seed: config.validation.seed), device: target.device)
        // The whole reference bank (no token drop), as at inference.
        var full = step
        full.bankDropRatio = 0
        let out = try full(cond.inputs, draws: SlidingWindowDraws(noiseInit: noise), generator: Generator(seed: config.validation.seed &+ 1)) { _ in }
        let emittedFrames = out.slides.count * step.chunkFrames
        let gen = try out.finalBuffer.narrow(2, start: 0, length: emittedFrames)
        let gt = try target.narrow(2, start: 0, length: emittedFrames)
        var metrics: [String: Double] = [:]
        metrics["latent_mse"] = try (gen - gt).square().mean().item()
        let g = gen.shape
        let images = try FrozenNetworks.decode(vae, gen.permute([0, 2, 1, 3, 4]).reshape([g[0] * emittedFrames, g[1], g[3], g[4]]),
                                               scale: latentScale, precision: precision)
        let truth = try window(cond.frames, start: 0, length: emittedFrames)
        metrics["pixel_mse"] = try ((images - truth) / 2).square().mean().item()
        func meanDiff(_ x: Tensor) throws -> Double {
            try ((x.narrow(0, start: 1, length: emittedFrames - 1) - x.narrow(0, start: 0, length: emittedFrames - 1)) / 2).abs().mean().item()
        }
        let dGen = try meanDiff(images), dGT = try meanDiff(truth)
        metrics["frame_diff"] = dGen
        metrics["frame_diff_gt"] = dGT
        metrics["frame_diff_error"] = abs(dGen - dGT)
        // Strip: ground truth (top) and generated (bottom), every emitted frame.
        let s = truth.shape
        let row = { (t: Tensor) throws -> Tensor in try t.permute([1, 2, 0, 3]).reshape([s[1], s[2], emittedFrames * s[3]]) }
        let grid = try Tensor.cat([row(truth), row(images)], dim: 1).clamp(min: -1, max: 1)
        let hwc = try ((grid + 1) * 127.5).round().clamp(min: 0, max: 255).to(.uint8).permute([1, 2, 0]).contiguous()
        try ImageIO.write(RGBImage(width: emittedFrames * s[3], height: 2 * s[2], pixels: try hwc.toArray(UInt8.self)),
                          to: directory.appendingPathComponent("clip.png").path)
        return metrics
    }
}
