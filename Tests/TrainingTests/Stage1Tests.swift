// Stage1Tests.swift — the stage-1 trainer on the tiny model and a small synthetic dataset: the loss
// falls, and a resumed run reproduces an uninterrupted one exactly.
import Foundation
import Inference
import Logging
import Media
import Models
import NN
import Testing
import Torch
@testable import Training

@Suite(.serialized) struct Stage1Tests {
    let logger = Logger(label: "test")

    /// A scratch folder with a dataset, a (one-step) VAE checkpoint and a stage-1 config.
    /// With `motionExtractor`, a one-step tiny motion extractor is trained too and stage 1 uses
    /// it (validation then measures the generated head pose with it).
    func setUp(steps: Int, checkpointEvery: Int, validateEvery: Int = 0,
               motionExtractor: Bool = false, baseModel: String = "",
               guidance: Double = 1, cacheLatents: Bool = false, stage1Extra: String = "") throws -> (dir: URL, config: URL) {
        let dir = try scratchWithDataset(clips: 8, frames: 16)
        try tinyVAEConfig(steps: 1, checkpointEvery: 1).write(to: dir.appendingPathComponent("vae.yaml"),
                                                              atomically: true, encoding: .utf8)
        let (s, o) = try runCLI(["train", "vae.yaml"], in: dir)
        #expect(s == 0, "\(o)")
        if motionExtractor {
            let me = """
                stage: motion_extractor
                run_name: me
                model:
                  motion_extractor: {num_kp: 21, num_bins: 66, depths: [1, 1, 1, 1], dims: [8, 8, 16, 16]}
                data: {dataset: Datasets/synth.h5, train_bs: 2, sample_margin: 2}
                solver: {learning_rate: 1.0e-3, max_train_steps: 1}
                validation: {validation_steps: 0, num_samples: 2}
                checkpointing: {checkpointing_steps: 1}
                """
            try me.write(to: dir.appendingPathComponent("me.yaml"), atomically: true, encoding: .utf8)
            let (s, o) = try runCLI(["train", "me.yaml"], in: dir)
            #expect(s == 0, "\(o)")
        }
        let model = TrainingTestPaths.packageRoot.appendingPathComponent("Configs/tiny/model.yaml").path
        let yaml = """
            stage: stage1
            run_name: s1
            seed: 11
            output_dir: \(dir.path)/Experiments
            model: \(model)
            data:
              dataset: \(dir.path)/Datasets/synth.h5
              train_bs: 4
              sample_margin: 2
              use_gt_keypoints: \(!motionExtractor)
              cache_latents: \(cacheLatents)
            solver:
              learning_rate: 3.0e-4
              lr_scheduler: constant
              max_train_steps: \(steps)
            validation:
              validation_steps: \(validateEvery)
              num_samples: 2
              num_inference_steps: 3
              guidance_scale: \(guidance)
            checkpointing:
              checkpointing_steps: \(checkpointEvery)
              keep_last: 2
              output_dir: \(dir.path)/Checkpoints
            stage1:
              vae_checkpoint: \(dir.path)/Checkpoints/vae/checkpoint-1
              latent_scale: 0
              motion_extractor_checkpoint: \(motionExtractor ? "\(dir.path)/Checkpoints/me/checkpoint-1" : "")
              base_model_path: "\(baseModel)"
              guidance_uncond: [reference, pose, motion]
              \(stage1Extra)
            """
        let url = dir.appendingPathComponent("stage1.yaml")
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        return (dir, url)
    }

    func losses(_ dir: URL) -> [Double] {
        MetricsLog.read(dir.appendingPathComponent("Experiments/s1/metrics.jsonl"))
            .filter { $0["validation"] == nil }.compactMap { $0["loss"] as? Double }
    }

    func train(_ dir: URL, _ config: URL, maxSteps: Int? = nil, resume: String? = nil) throws {
        let cfg = try TrainingConfig.load(path: config.path)
        try StageFactory.validate(cfg, logger: logger)
        try Torch.manualSeed(cfg.seed)
        let trainer = try Trainer(config: cfg, stage: StageFactory.make(cfg, logger: logger), logger: logger)
        try trainer.run(maxSteps: maxSteps, resume: resume)
    }

    @Test func tinyStage1LossFalls() throws {
        let (dir, config) = try setUp(steps: 100, checkpointEvery: 0)
        defer { try? FileManager.default.removeItem(at: dir) }
        try train(dir, config)
        let l = losses(dir)
        #expect(l.count == 100)
        let first = l.prefix(20).reduce(0, +) / 20, last = l.suffix(20).reduce(0, +) / 20
        #expect(last < first * 0.8, "stage-1 loss did not fall: first 20 mean \(first), last 20 mean \(last)")
    }

    /// stage1.snr_gamma reaches the step; the weighting is min(SNR_t, γ) per sample on the squared
    /// x̂0 errors (diffusers' Min-SNR on ε errors), and γ = 0 leaves the reference's loss.
    @Test func snrGammaWeighsSamples() throws {
        let (dir, config) = try setUp(steps: 1, checkpointEvery: 0, stage1Extra: "snr_gamma: 5")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = try TrainingConfig.load(path: config.path)
        let stage = try #require(try StageFactory.make(cfg, logger: logger) as? Stage1)
        #expect(stage.step.snrGamma == 5)

        let a = try Tensor.randn([2, 4, 1, 3, 3]), b = try Tensor.randn([2, 4, 1, 3, 3])
        let alpha = try stage.scheduler.alphaProd(Tensor([Int64(999), 10]))
        let got: Double = try HybridMotionStep.snrWeightedMSE(a, b, alphaProd: alpha, gamma: 5).item()
        let al: [Double] = try alpha.toArray(Float.self).map { Double($0) }
        let diff = try a - b
        let perSample: [Double] = try diff.square().reshape([2, -1]).mean([1]).toArray(Float.self).map { Double($0) }
        let snr: [Double] = al.map { $0 / (1 - $0) }
        let want = (min(snr[0], 5) * perSample[0] + min(snr[1], 5) * perSample[1]) / 2
        #expect(abs(got - want) < 1e-5 * max(1, want), "weighted MSE \(got), expected \(want)")
        // t = 999 weighs far less than t = 10, which is capped at γ.
        #expect(snr[0] < 0.01 && snr[1] > 5)
    }

    /// Guidance combines the branches as diffusers does and skips the unconditional one at scale 1.
    @Test func guidanceCombinesBranches() throws {
        let c = try Tensor([Float(1), 2]), u = try Tensor([Float(0.5), 4])
        var uncondRuns = 0
        let plain = try Sampling.guided(scale: 1) { c } uncond: { uncondRuns += 1; return u }.toArray(Float.self)
        #expect(uncondRuns == 0)
        #expect(plain == [1, 2])
        let g = try Sampling.guided(scale: 3) { c } uncond: { uncondRuns += 1; return u }.toArray(Float.self)
        #expect(uncondRuns == 1)
        #expect(g == [2, -2])
    }

    /// Validation with classifier-free guidance (every condition dropped in the unguided branch).
    @Test func validationWritesGridsAndPoseMetrics() throws {
        let (dir, config) = try setUp(steps: 2, checkpointEvery: 0, validateEvery: 2, motionExtractor: true, guidance: 2)
        defer { try? FileManager.default.removeItem(at: dir) }
        try train(dir, config)
        let run = dir.appendingPathComponent("Experiments/s1")
        for step in [0, 2] {
            for file in ["grid.png", "reenact.png", "x0_t500.png", "drive.png", "drive.mp4"] {
                let path = run.appendingPathComponent("validation/step-\(step)/\(file)").path
                #expect(FileManager.default.fileExists(atPath: path), "missing \(path)")
            }
        }
        let vals = MetricsLog.read(run.appendingPathComponent("metrics.jsonl")).filter { $0["validation"] != nil }
        #expect(vals.count == 2)
        for v in vals {
            for key in ["val_masked_mse", "val_face_mse_pixels", "val_face_mse_pixels_copy_reference", "val_pose_error_deg",
                        "val_pose_error_copy_reference_deg", "val_pose_error_undriven_deg", "val_pose_error_vae_deg", "val_masked_mse_undriven", "val_masked_mse_no_pose", "val_masked_mse_no_motion",
                        "val_drive_pose_error_deg",
                        "val_drive_pose_error_copy_reference_deg"] {
                let x = v[key] as? Double
                #expect(x != nil && x!.isFinite && x! >= 0, "\(key) = \(String(describing: x))")
            }
        }
        // reenact.png: (n + 1) × (n + 1) cells of 64² for n = 2 val samples.
        let png = try ImageIO.read(run.appendingPathComponent("validation/step-2/reenact.png").path)
        #expect(png.width == 3 * 64 && png.height == 3 * 64)
        // drive.png: driving | keypoints | generated rows over validation.num_frames (default 16)
        // frames of one val clip; drive.mp4 has one frame per column.
        let strip = try ImageIO.read(run.appendingPathComponent("validation/step-2/drive.png").path)
        #expect(strip.width == 16 * 64 && strip.height == 3 * 64)
        let video = try VideoReader(path: run.appendingPathComponent("validation/step-2/drive.mp4").path)
        #expect(video.width == 4 * 64 && video.height == 64)
        #expect(try video.readAll().count == 16)
    }

    /// The `unet` stage (the tiny sd-image-variations stand-in) trains and validates; stage 1
    /// started from its checkpoint holds its weights in both UNets (the reference UNet without the
    /// output layers, the denoiser as from_pretrained_2d, motion modules left as built); a base
    /// folder without UNet weights is an error naming what was expected.
    @Test func baseUNetStageSeedsBothStage1UNets() throws {
        let (dir, _) = try setUp(steps: 1, checkpointEvery: 0)
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = TrainingTestPaths.packageRoot.appendingPathComponent("Configs/tiny/model.yaml").path
        let unet = """
            stage: unet
            run_name: base
            model: \(model)
            data: {dataset: Datasets/synth.h5, train_bs: 4, sample_margin: 2}
            solver: {learning_rate: 1.0e-3, max_train_steps: 2}
            validation: {validation_steps: 2, num_samples: 2, num_inference_steps: 2, guidance_scale: 2}
            checkpointing: {checkpointing_steps: 2}
            unet: {vae_checkpoint: Checkpoints/vae/checkpoint-1, latent_scale: 0}
            """
        try unet.write(to: dir.appendingPathComponent("unet.yaml"), atomically: true, encoding: .utf8)
        let (status, out) = try runCLI(["train", "unet.yaml"], in: dir)
        #expect(status == 0, "\(out)")
        let run = dir.appendingPathComponent("Experiments/base")
        let grid = try ImageIO.read(run.appendingPathComponent("validation/step-2/grid.png").path)
        #expect(grid.width == 3 * 64 && grid.height == 2 * 64)
        let vals = MetricsLog.read(run.appendingPathComponent("metrics.jsonl")).filter { $0["validation"] != nil }
        #expect(vals.count == 2 && vals.allSatisfy { ($0["val_loss"] as? Double)?.isFinite == true })

        let base = dir.appendingPathComponent("Checkpoints/base/checkpoint-2")
        let weights = try SafeTensorsSource(path: base.appendingPathComponent("unet.safetensors").path)
        let (_, config) = try setUp(steps: 1, checkpointEvery: 0, baseModel: base.path)
        defer { try? FileManager.default.removeItem(at: config.deletingLastPathComponent()) }
        let cfg = try TrainingConfig.load(path: config.path)
        try StageFactory.validate(cfg, logger: logger)
        let stage = try #require(try StageFactory.make(cfg, logger: logger) as? Stage1)
        func expectFromBase(_ m: Module, _ key: String) throws {
            let own = try #require(m.stateDict().first { $0.0 == key }?.1, "no \(key)")
            let want = try Tensor.empty(own.shape)
            try weights.read(key, into: want)
            #expect(try own.allClose(want, rtol: 0, atol: 0), "\(key) differs from the base UNet's")
        }
        for key in ["conv_in.weight", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight", "time_embedding.linear_1.bias"] {
            try expectFromBase(stage.model.reference, key)
            try expectFromBase(stage.model.denoiser, key)
        }
        try expectFromBase(stage.model.denoiser, "conv_out.weight")

        // A folder that holds no UNet weights.
        var bad = cfg
        guard case .object(var section) = cfg.stageSection else { Issue.record("no stage1 section"); return }
        section["base_model_path"] = .string(dir.path)
        bad.stageSection = .object(section)
        #expect {
            _ = try StageFactory.make(bad, logger: logger)
        } throws: { "\($0)".contains("unet.safetensors") && "\($0)".contains(dir.path) }
    }

    /// data.cache_latents: the stage-1 and unet-stage losses from cached VAE moments, CLIP
    /// embeddings and motion-extractor keypoints equal those from encoding every batch (up to the
    /// batch composition of the frozen convolutions), with the same draws.
    @Test func cachedFrozenFeaturesGiveTheSameLosses() throws {
        let (dir, config) = try setUp(steps: 1, checkpointEvery: 0, motionExtractor: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let unet = """
            stage: unet
            run_name: base
            seed: 3
            model: \(TrainingTestPaths.packageRoot.appendingPathComponent("Configs/tiny/model.yaml").path)
            data: {dataset: \(dir.path)/Datasets/synth.h5, train_bs: 4, sample_margin: 2}
            solver: {learning_rate: 1.0e-3, max_train_steps: 1}
            unet: {vae_checkpoint: \(dir.path)/Checkpoints/vae/checkpoint-1, latent_scale: 0, noise_offset: 0.05}
            """
        let unetURL = dir.appendingPathComponent("unet.yaml")
        try unet.write(to: unetURL, atomically: true, encoding: .utf8)
        for url in [config, unetURL] {
            var losses: [[String: Double]] = [], features: [[Tensor]] = []
            for cached in [false, true] {
                var cfg = try TrainingConfig.load(path: url.path)
                cfg.data.cache_latents = cached
                try Torch.manualSeed(cfg.seed)
                let stage = try StageFactory.make(cfg, logger: logger)
                // The frozen features themselves (the pose guider's zero-initialised output
                // hides the keypoints from the first losses).
                if let s1 = stage as? Stage1 {
                    let c = try s1.conditions(s1.feed.batch(1), sampleLatents: false, generator: nil)
                    features.append([c.referenceLatent, c.targetLatent, c.clip, c.canvas])
                    if cached { try expectCacheLimitsAndErrors(s1, dataset: "\(dir.path)/Datasets/synth.h5") }
                } else if let u = stage as? UNetStage {
                    let c = try u.conditions(u.feed.batch(1), sample: false, generator: nil)
                    features.append([c.latents, c.clip])
                }
                let g = try Generator(seed: 5)
                losses.append(try [0, 4].flatMap { sample in
                    try stage.losses(sample: sample, generator: g).map { ("\($0.key)@\(sample)", try $0.value.item()) }
                }.reduce(into: [:]) { $0[$1.0] = $1.1 })
            }
            #expect(features[0].count == features[1].count && features[0].count >= 2)
            for (i, (a, b)) in zip(features[0], features[1]).enumerated() {
                #expect(try a.allClose(b, rtol: 1e-4, atol: 1e-5), "\(url.lastPathComponent): feature \(i) differs when cached")
            }
            #expect(losses[0].count >= 2 && Set(losses[0].keys) == Set(losses[1].keys))
            for (k, v) in losses[0] {
                let w = losses[1][k] ?? .nan
                #expect(abs(v - w) <= 1e-4 * abs(v) + 1e-6, "\(url.lastPathComponent) \(k): \(v) encoded vs \(w) cached")
            }
        }
    }

    /// The built cache holds what `footprint` promised; over the memory limit it refuses when the
    /// stage is made (before a run writes anything), naming the dataset; a frame it does not hold
    /// is an error naming the clip and frame.
    func expectCacheLimitsAndErrors(_ s1: Stage1, dataset: String) throws {
        let cache = try #require(try s1.cache?.get())
        let encoders = FrozenFeatureCache.Encoders(vae: s1.model.vae, imageEncoder: s1.model.imageEncoder,
                                                   processor: s1.clipProcessor, motionExtractor: s1.model.motionExtractor,
                                                   precision: s1.precision)
        let held = [cache.moments, cache.clip, cache.keypoints].compactMap { $0 }.reduce(0) { $0 + $1.shape.reduce(4, *) }
        #expect(try FrozenFeatureCache.footprint(sampler: s1.feed.sampler, encoders: encoders) == held)
        #expect {
            _ = try LazyFeatureCache(sampler: s1.feed.sampler, encoders: encoders, device: .cpu, logger: logger,
                                     memoryLimit: Double(held - 1))
        } throws: { "\($0)".contains("data.cache_latents") && "\($0)".contains(dataset) && "\($0)".contains("over the limit") }
        #expect { _ = try cache.rows(["no-such-clip"], [0]) } throws: { "\($0)".contains("'no-such-clip' frame 0") }
        let id = s1.feed.sampler.dataset.clips[0].id, n = s1.feed.sampler.dataset.clips[0].frameCount
        #expect { _ = try cache.rows([id], [n]) } throws: { "\($0)".contains("'\(id)' frame \(n)") }
    }

    @Test(arguments: [false, true]) func stage1ResumeIsExact(cacheLatents: Bool) throws {
        let (a, configA) = try setUp(steps: 8, checkpointEvery: 4, cacheLatents: cacheLatents)
        let (b, configB) = try setUp(steps: 8, checkpointEvery: 4, cacheLatents: cacheLatents)
        defer { try? FileManager.default.removeItem(at: a); try? FileManager.default.removeItem(at: b) }
        try train(a, configA)
        try train(b, configB, maxSteps: 4)
        try Torch.manualSeed(999)
        try train(b, configB, resume: "latest")
        let la = losses(a), lb = losses(b)
        #expect(la.count == 8 && lb.count == 8)
        #expect(la == lb, "resumed stage-1 losses differ:\n\(la)\n\(lb)")
    }
}
