// Stage2Tests.swift — the stage-2 trainer (fewer-step distillation) on the tiny model, starting
// from a stage-1 checkpoint made in the test: two optimizers (the discriminator steps only after
// d_start and never takes gradients from the generator's loss), exact resume, the validation
// comparison with the stage-1 model, and the config errors of the stage-2 keys.
import Foundation
import Logging
import Data
import Models
import NN
import Testing
import Torch
@testable import Training

@Suite(.serialized) struct Stage2Tests {
    let logger = Logger(label: "test")

    /// A scratch folder with a 2-step stage-1 run (and its VAE and motion extractor) and a stage-2
    /// config starting from it.
    func setUp(steps: Int, checkpointEvery: Int, dStart: Int, advStart: Int, validateEvery: Int = 0,
               extra: String = "") throws -> (dir: URL, config: URL) {
        let s1 = Stage1Tests()
        let (dir, s1Config) = try s1.setUp(steps: 2, checkpointEvery: 2, motionExtractor: true)
        try s1.train(dir, s1Config)
        let model = TrainingTestPaths.packageRoot.appendingPathComponent("Configs/tiny/model.yaml").path
        let yaml = """
            stage: stage2
            run_name: s2
            seed: 5
            output_dir: \(dir.path)/Experiments
            model: \(model)
            data:
              dataset: \(dir.path)/Datasets/synth.h5
              train_bs: 2
              sample_margin: 2
            solver:
              learning_rate: 3.0e-4
              lr_scheduler: constant
              max_train_steps: \(steps)
            validation:
              validation_steps: \(validateEvery)
              num_samples: 2
              num_inference_steps: 3
            checkpointing:
              checkpointing_steps: \(checkpointEvery)
              keep_last: 2
              output_dir: \(dir.path)/Checkpoints
            stage2:
              stage1_checkpoint: \(dir.path)/Checkpoints/s1/checkpoint-2
              vae_checkpoint: \(dir.path)/Checkpoints/vae/checkpoint-1
              motion_extractor_checkpoint: \(dir.path)/Checkpoints/me/checkpoint-1
              latent_scale: 0
              image_size: 64
              motion_encoder_size: 64
              motion_extractor_size: 64
              lpips_weight: 0
              d_start: \(dStart)
              adv_start: \(advStart)
              discriminator: {img_resolution: 64, channel_base: 256, channel_max: 16, temb_channels: 16}
              \(extra)
            """
        let url = dir.appendingPathComponent("stage2.yaml")
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        return (dir, url)
    }

    func records(_ dir: URL) -> [[String: Any]] {
        MetricsLog.read(dir.appendingPathComponent("Experiments/s2/metrics.jsonl")).filter { $0["validation"] == nil }
    }

    func make(_ config: URL) throws -> (TrainingConfig, Stage2) {
        let cfg = try TrainingConfig.load(path: config.path)
        try StageFactory.validate(cfg, logger: logger)
        try Torch.manualSeed(cfg.seed)
        return (cfg, try #require(try StageFactory.make(cfg, logger: logger) as? Stage2))
    }

    @Test func discriminatorStepsOnlyAfterDStartAndGeneratorTrains() throws {
        let (dir, url) = try setUp(steps: 3, checkpointEvery: 3, dStart: 1, advStart: 1)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (cfg, stage) = try make(url)
        // The stage-1 weights are where stage 2 starts.
        let s1 = try SafeTensorsFile(path: dir.appendingPathComponent("Checkpoints/s1/checkpoint-2/denoising_unet.safetensors").path)
        #expect(try stage.student.denoiser.namedParameters().first!.1.maxAbsDiff(s1.tensor(stage.student.denoiser.namedParameters().first!.0)) == 0)
        let d0 = try stage.discriminator.namedParameters().map { try $0.1.clone() }
        let g0 = try stage.student.poseGuider.namedParameters().map { try $0.1.clone() }
        let trainer = try Trainer(config: cfg, stage: stage, logger: logger)
        try trainer.run(maxSteps: 2)
        // Steps 1 and 2 (0 and 1 steps taken before them, not more than d_start 1): D untouched, the generator moved.
        for (p, b) in zip(stage.discriminator.namedParameters(), d0) { #expect(try p.1.maxAbsDiff(b) == 0, "\(p.0) moved") }
        #expect(try zip(stage.student.poseGuider.namedParameters(), g0).contains { try $0.0.1.maxAbsDiff($0.1) > 0 })
        #expect(trainer.optimizers.map(\.name) == ["generator", "discriminator"])
        #expect(trainer.optimizers.map(\.stepsTaken) == [2, 0])
        // The adversarial term (adv_start 1) likewise counts from step 3 on.
        let r = records(dir)
        #expect(r.count == 2 && r.allSatisfy { $0["loss_adv"] == nil && $0["loss_d"] == nil })
        #expect(r.allSatisfy { ($0["lr_discriminator"] as? Double) == 2 * (($0["lr_generator"] as? Double) ?? 0) })
        try trainer.run(maxSteps: 3, resume: "latest")
        #expect(trainer.optimizers.map(\.stepsTaken) == [3, 1])
        let last = try #require(records(dir).last)
        #expect(last["loss_adv"] != nil && last["loss_d"] != nil && last["grad_norm_discriminator"] != nil)
        #expect(try zip(stage.discriminator.namedParameters(), d0).contains { try $0.0.1.maxAbsDiff($0.1) > 0 })
        // Every generator parameter is in the generator optimizer, the reference UNet's frozen
        // up block (reference_frozen) excepted; the discriminator's only in its own.
        let gNames = Set(trainer.optimizers[0].params.map(\.0)), dNames = Set(trainer.optimizers[1].params.map(\.0))
        #expect(gNames.contains { $0.hasPrefix("motion_encoder.") } && gNames.contains { $0.hasPrefix("pose_guider.") })
        #expect(gNames.contains { $0.hasPrefix("reference_unet.") } && gNames.contains { $0.hasPrefix("denoising_unet.") })
        #expect(dNames.allSatisfy { $0.hasPrefix("discriminator.") } && !dNames.isEmpty && gNames.isDisjoint(with: dNames))
    }

    /// rollout: stage1 with update_steps [3, 4]: the frozen stage-1 model runs the steps without
    /// gradient, only n ∈ {3, 4} is drawn, the student trains and the stage-1 model stays as loaded.
    @Test func stage1RolloutAndRestrictedStepCounts() throws {
        let (dir, url) = try setUp(steps: 4, checkpointEvery: 4, dStart: 10, advStart: 10,
                                   extra: "rollout: stage1\n  update_steps: [3, 4]")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (cfg, stage) = try make(url)
        #expect(stage.section.rollout == "stage1" && stage.section.update_steps == [3, 4])
        let teacher = try #require(stage.teacher)
        let t0 = try teacher.denoiser.namedParameters().map { try $0.1.clone() }
        let s0 = try stage.student.denoiser.namedParameters().map { try $0.1.clone() }
        try Trainer(config: cfg, stage: stage, logger: logger).run()
        let n = records(dir).compactMap { $0["update_steps"] as? Double }
        #expect(n.count == 4 && n.allSatisfy { $0 == 3 || $0 == 4 }, "\(n)")
        for (p, b) in zip(teacher.denoiser.namedParameters(), t0) { #expect(try p.1.maxAbsDiff(b) == 0, "stage-1 \(p.0) moved") }
        #expect(try zip(stage.student.denoiser.namedParameters(), s0).contains { try $0.0.1.maxAbsDiff($0.1) > 0 })
    }

    /// renoise: ddim — each no-gradient x̂0 reaches the next timestep with its own ε̂ (the DDIM
    /// update sampling uses), so the given fresh-noise draws change nothing; with `fresh` they do.
    @Test func ddimRenoiseFollowsTheSampler() throws {
        let (dir, url) = try setUp(steps: 1, checkpointEvery: 1, dStart: 10, advStart: 10, extra: "renoise: ddim")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, stage) = try make(url)
        #expect(stage.section.renoise == "ddim" && stage.step.renoiseWithPrediction)
        let b = try stage.feed.batch(0)
        let cond = try stage.conditions(b, sampleLatents: false, generator: nil)
        let g = try Generator(seed: 5)
        let shape = [b.target.shape[0], cond.referenceLatent.shape[1], 1] + cond.referenceLatent.shape.suffix(2)
        let noise = try Tensor.randn(shape, generator: g)
        let inputs = DistillationInputs(referenceLatent: cond.referenceLatent, clip: cond.clip,
                                        poseFeatures: try stage.student.poseGuider(cond.canvas.unsqueeze(2)),
                                        motion: try stage.student.motionEncoder(b.faceCrop))
        func run(_ step: DistillationStep, renoise: [Tensor]) throws -> DistillationOutputs {
            try Torch.noGrad {
                try step(inputs, draws: DistillationDraws(steps: 3, noiseInit: noise, renoise: renoise, uncond: false,
                                                          dropPose: false, dropMotion: false))
            }
        }
        let drawsA = try (0..<2).map { _ in try Tensor.randn(shape, generator: g) }
        let drawsB = try (0..<2).map { _ in try Tensor.randn(shape, generator: g) }
        var ddim = stage.step
        ddim.bankDropRatio = 0   // no reference-token drops (drawn from the global generator)
        let a = try run(ddim, renoise: drawsA), b2 = try run(ddim, renoise: drawsB)
        for s in 0..<2 {
            let t = try Tensor.full([shape[0]], Double(stage.step.timesteps[s + 1]), dtype: .int64)
            let update = try stage.scheduler.addNoise(a.stepX0[s], noise: a.stepEps[s], timesteps: t)
            #expect(try a.stepInputs[s + 1].maxAbsDiff(update) < 1e-5, "step \(s + 1)'s input is not the DDIM update")
        }
        #expect(try a.x0.maxAbsDiff(b2.x0) == 0, "the fresh-noise draws changed a ddim rollout")
        var fresh = ddim
        fresh.renoiseWithPrediction = false
        #expect(try run(fresh, renoise: drawsA).x0.maxAbsDiff(run(fresh, renoise: drawsB).x0) > 1e-4)
    }

    /// Without image_encoder_path both stages use a frozen random CLIP: stage 2 must rebuild the one
    /// stage 1 trained with, whatever its own seed.
    @Test func randomCLIPIsStage1s() throws {
        let (dir, url) = try setUp(steps: 1, checkpointEvery: 1, dStart: 0, advStart: 0)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, stage2) = try make(url)
        let s1Config = try TrainingConfig.load(path: dir.appendingPathComponent("stage1.yaml").path)
        let stage1 = try #require(try StageFactory.make(s1Config, logger: logger) as? Stage1)
        let a = stage1.model.imageEncoder.namedParameters(), b = stage2.imageEncoder.namedParameters()
        #expect(a.count == b.count && !a.isEmpty)
        for (x, y) in zip(a, b) {
            let diff = try x.1.maxAbsDiff(y.1)
            #expect(x.0 == y.0 && diff == 0, "\(x.0) differs")
        }
    }

    @Test func stage2ResumeIsExact() throws {
        let (a, configA) = try setUp(steps: 6, checkpointEvery: 3, dStart: 1, advStart: 2)
        let (b, configB) = try setUp(steps: 6, checkpointEvery: 3, dStart: 1, advStart: 2)
        defer { try? FileManager.default.removeItem(at: a); try? FileManager.default.removeItem(at: b) }
        func train(_ url: URL, maxSteps: Int? = nil, resume: String? = nil) throws {
            let (cfg, stage) = try make(url)
            try Trainer(config: cfg, stage: stage, logger: logger).run(maxSteps: maxSteps, resume: resume)
        }
        try train(configA)
        try train(configB, maxSteps: 3)
        try Torch.manualSeed(999)
        try train(configB, resume: "latest")
        for key in ["loss", "loss_d", "loss_mse", "loss_adv"] {
            let la = records(a).compactMap { $0[key] as? Double }, lb = records(b).compactMap { $0[key] as? Double }
            #expect(!la.isEmpty && la == lb, "\(key) differs after resume:\n\(la)\n\(lb)")
        }
        #expect(records(a).count == 6 && records(b).count == 6)
    }

    @Test func validationComparesTheStudentWithStage1() throws {
        let (dir, url) = try setUp(steps: 1, checkpointEvery: 1, dStart: 0, advStart: 0, validateEvery: 1)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (cfg, stage) = try make(url)
        try Trainer(config: cfg, stage: stage, logger: logger).run()
        let vals = MetricsLog.read(dir.appendingPathComponent("Experiments/s2/metrics.jsonl")).filter { $0["validation"] != nil }
        #expect(vals.map { $0["step"] as? Int } == [0, 1])
        for v in vals {
            for name in ["student_4step", "stage1_4step", "stage1_3step"] {
                for m in ["mse", "psnr", "pose_error_deg", "seconds_per_sample"] {
                    #expect(v["val_\(name)_\(m)"] as? Double != nil, "no val_\(name)_\(m)")
                }
            }
        }
        // At step 0 the student is the stage-1 model: the same 4-step samples.
        #expect(vals[0]["val_student_4step_mse"] as? Double == vals[0]["val_stage1_4step_mse"] as? Double)
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("Experiments/s2/validation/step-1/grid.png").path))
    }

    @Test func configErrorsNameTheStage2Key() throws {
        var c = TrainingConfig(stage: "stage2", run_name: "x")
        func problems(_ section: [String: JSONValue]) -> [String] {
            c.stageSection = .object(section)
            return StageFactory.problems(c, checkFiles: false)
        }
        #expect(problems(["d_strat": .number(1)]).contains { $0.contains("d_strat") && $0.contains("d_start") })
        #expect(problems(["lpips_weight": .number(0), "adv_start": .number(-1)]).contains { $0.contains("adv_start") && $0.contains(">= 0") })
        #expect(problems(["lpips_weight": .number(2)]).contains { $0.contains("lpips_path") })
        #expect(problems(["lpips_weight": .number(0), "timesteps_list": .array([.number(333), .number(666)])])
            .contains { $0.contains("timesteps_list") })
        #expect(problems(["lpips_weight": .number(0), "optimizers": .object(["discriminatr": .object([:])])])
            .contains { $0.contains("discriminatr") && $0.contains("did you mean 'discriminator'") })
        #expect(problems(["lpips_weight": .number(0), "optimizers": .object(["generator": .object(["learning_rte": .number(1)])])])
            .contains { $0.contains("generator.learning_rte") && $0.contains("learning_rate") })
        #expect(problems(["lpips_weight": .number(0), "discriminator": .object(["img_resolution": .number(48)])])
            .contains { $0.contains("img_resolution") || $0.contains("power of two") })
        #expect(problems(["lpips_weight": .number(0), "update_steps": .array([.number(0), .number(4)])])
            .contains { $0.contains("update_steps") && $0.contains("1...4") })
        #expect(problems(["lpips_weight": .number(0), "rollout": .string("teacher")])
            .contains { $0.contains("rollout") && $0.contains("student or stage1") })
        #expect(problems(["lpips_weight": .number(0), "renoise": .string("ddpm")])
            .contains { $0.contains("renoise") && $0.contains("fresh or ddim") })
        #expect(problems(["lpips_weight": .number(0)]).isEmpty)
    }

    /// The generic feed: rank r of w hands out the sampler's batches r, r + w, …; one rank is the stream.
    @Test func batchFeedShardsTheStreamByRank() throws {
        let dir = try scratchWithDataset(clips: 4, frames: 16)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ds = try DatasetReader(path: dir.appendingPathComponent("Datasets/synth.h5").path, logger: logger)
        var c = TrainingConfig(stage: "stage2", run_name: "x")
        c.data.sample_margin = 2
        c.data.train_bs = 2
        let cfg = samplerConfig(c, imageSize: 32, motionEncoderSize: 32, motionExtractorSize: 32, split: "train",
                                batchSize: 2, seed: 3)
        let sampler = try PairSampler(dataset: ds, config: cfg)
        let whole = try BatchFeed(sampler: sampler, prefetch: 2)
        let ranks = try (0..<2).map { try BatchFeed(sampler: sampler, prefetch: 2, rank: $0, worldSize: 2) }
        for i in 0..<3 {
            for r in 0..<2 {
                let a = try ranks[r].batch(i), b = try whole.batch(i * 2 + r)
                #expect(a.clipIDs == b.clipIDs && a.targetIndices == b.targetIndices)
                #expect(try a.target.maxAbsDiff(b.target) == 0)
            }
        }
        #expect(throws: TrainingError.self) { try BatchFeed(sampler: sampler, prefetch: 1, rank: 2, worldSize: 2) }
    }
}
