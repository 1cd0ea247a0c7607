// Stage3Tests.swift — the stage-3 trainer (sliding streaming training, train_stage3.py) on the
// tiny model, from a stage-2 checkpoint made in the test on a dataset with 28-frame clips (4 slides,
// gradient slides 0 and 3) and two 12-frame clips: only temporal parameters change, resume is exact
// at a clip boundary and after an interrupt in the middle of a clip, short clips are reported.
import Foundation
import Logging
import Data
import Inference
import Models
import NN
import Testing
import Torch
@testable import Training

@Suite(.serialized) struct Stage3Tests {
    let logger = Logger(label: "test")
    static let frames = 28

    /// A scratch folder: a dataset of 6 train clips (4 of 28 frames, 2 of 12) and 2 val clips of
    /// 28 frames, a 1-step VAE, a 2-step stage 1, a 1-step stage 2 and a stage-3 config.
    func setUp(steps: Int, checkpointEvery: Int, nSampleFrames: Int = Stage3Tests.frames, dStart: Int = 0,
               validateEvery: Int = 0) throws -> (dir: URL, config: URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pl-s3-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("Datasets"), withIntermediateDirectories: true)
        let writer = try DatasetWriter(path: dir.appendingPathComponent("Datasets/synth.h5").path)
        let long = SynthConfig(clips: 6, frames: Self.frames, size: 64, seed: 3, fps: 10)
        let short = SynthConfig(clips: 2, frames: 12, size: 64, seed: 4, fps: 10)
        var train: [String] = [], val: [String] = []
        for i in 0..<6 {
            var c = SyntheticPortraits.clip(i, config: long)
            c.id = "long_\(i)"
            try writer.addClip(c)
            if i < 4 { train.append(c.id) } else { val.append(c.id) }
        }
        for i in 0..<2 {
            var c = SyntheticPortraits.clip(i, config: short)
            c.id = "short_\(i)"
            try writer.addClip(c)
            train.append(c.id)
        }
        try writer.finish(train: train, val: val)
        try tinyVAEConfig(steps: 1, checkpointEvery: 1).write(to: dir.appendingPathComponent("vae.yaml"), atomically: true, encoding: .utf8)
        let model = TrainingTestPaths.packageRoot.appendingPathComponent("Configs/tiny/model.yaml").path
        let s1 = """
            stage: stage1
            run_name: s1
            seed: 11
            model: \(model)
            data: {dataset: Datasets/synth.h5, train_bs: 2, sample_margin: 2, use_gt_keypoints: true}
            solver: {learning_rate: 3.0e-4, lr_scheduler: constant, max_train_steps: 2}
            validation: {validation_steps: 0, num_samples: 2}
            checkpointing: {checkpointing_steps: 2, keep_last: 1}
            stage1: {vae_checkpoint: Checkpoints/vae/checkpoint-1, latent_scale: 0}
            """
        let s2 = """
            stage: stage2
            run_name: s2
            seed: 5
            model: \(model)
            data: {dataset: Datasets/synth.h5, train_bs: 2, sample_margin: 2, use_gt_keypoints: true}
            solver: {learning_rate: 3.0e-4, lr_scheduler: constant, max_train_steps: 1}
            validation: {validation_steps: 0, num_samples: 2}
            checkpointing: {checkpointing_steps: 1, keep_last: 1}
            stage2:
              stage1_checkpoint: Checkpoints/s1/checkpoint-2
              vae_checkpoint: Checkpoints/vae/checkpoint-1
              latent_scale: 0
              image_size: 64
              motion_encoder_size: 64
              motion_extractor_size: 64
              lpips_weight: 0
              compare_stage1: false
              discriminator: {img_resolution: 64, channel_base: 256, channel_max: 16, temb_channels: 16}
            """
        try s1.write(to: dir.appendingPathComponent("s1.yaml"), atomically: true, encoding: .utf8)
        try s2.write(to: dir.appendingPathComponent("s2.yaml"), atomically: true, encoding: .utf8)
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
        for file in ["vae.yaml", "me.yaml", "s1.yaml", "s2.yaml"] {
            let (status, out) = try runCLI(["train", file, "--threads", "2"], in: dir)
            try #require(status == 0, "train \(file) failed: \(out)")
        }
        let s3 = """
            stage: stage3
            run_name: s3
            seed: 7
            output_dir: \(dir.path)/Experiments
            model: \(model)
            data: {dataset: \(dir.path)/Datasets/synth.h5, train_bs: 1, prefetch: 1, n_sample_frames: \(nSampleFrames), sample_rate: 1, use_gt_keypoints: true}
            solver: {learning_rate: 1.0e-3, lr_scheduler: constant, max_train_steps: \(steps)}
            validation: {validation_steps: \(validateEvery), num_samples: 1}
            checkpointing: {checkpointing_steps: \(checkpointEvery), keep_last: 3, output_dir: \(dir.path)/Checkpoints}
            stage3:
              stage2_checkpoint: \(dir.path)/Checkpoints/s2/checkpoint-1
              vae_checkpoint: \(dir.path)/Checkpoints/vae/checkpoint-1
              motion_extractor_checkpoint: \(dir.path)/Checkpoints/me/checkpoint-1
              latent_scale: 0
              image_size: 64
              motion_encoder_size: 64
              motion_extractor_size: 64
              max_batch_frames: 16
              lpips_weight: 0
              bank_drop_ratio: 0.3
              d_start: \(dStart)
              discriminator: {img_resolution: 64, channel_base: 256, channel_max: 16, temb_channels: 16}
            """
        let url = dir.appendingPathComponent("stage3.yaml")
        try s3.write(to: url, atomically: true, encoding: .utf8)
        return (dir, url)
    }

    func make(_ config: URL) throws -> (TrainingConfig, Stage3) {
        let cfg = try TrainingConfig.load(path: config.path)
        try StageFactory.validate(cfg, logger: logger)
        try Torch.manualSeed(cfg.seed)
        return (cfg, try #require(try StageFactory.make(cfg, logger: logger) as? Stage3))
    }

    func records(_ dir: URL) -> [[String: Any]] {
        MetricsLog.read(dir.appendingPathComponent("Experiments/s3/metrics.jsonl")).filter { $0["validation"] == nil }
    }

    @Test func onlyTemporalParametersChangeAndShortClipsAreReported() throws {
        let (dir, url) = try setUp(steps: 1, checkpointEvery: 1, dStart: 5)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (cfg, stage) = try make(url)
        // The two 12-frame clips are left out of the train schedule, by name.
        #expect(stage.skippedClips.map(\.id).sorted() == ["short_0", "short_1"])
        #expect(stage.skippedClips.allSatisfy { $0.frames == 12 })
        let named: [(String, Module)] = [("denoising_unet", stage.denoiser), ("reference_unet", stage.reference),
                                         ("pose_guider", stage.poseGuider), ("motion_encoder", stage.motionEncoder),
                                         ("discriminator", stage.discriminator)]
        var before: [String: Tensor] = [:]
        for (m, module) in named { for (k, p) in module.namedParameters() { before["\(m).\(k)"] = try p.clone() } }
        let trainer = try Trainer(config: cfg, stage: stage, logger: logger)
        #expect(trainer.optimizers[0].params.allSatisfy { $0.0.hasPrefix("temporal_module.") && $0.0.contains("temporal_modules.") })
        #expect(!trainer.optimizers[0].params.isEmpty)
        try trainer.run()
        // One clip of 28 frames: slides 0 and 3 take a generator step each; D waits for d_start.
        #expect(trainer.optimizers.map(\.stepsTaken) == [2, 0])
        var moved = 0
        for (m, module) in named {
            for (k, p) in module.namedParameters() {
                let diff = try p.maxAbsDiff(before["\(m).\(k)"]!)
                if m == "denoising_unet" && k.contains("temporal_modules.") {
                    if diff > 0 { moved += 1 }
                } else {
                    #expect(diff == 0, "\(m).\(k) changed (only temporal modules train)")
                }
            }
        }
        #expect(moved > 0, "no temporal parameter moved")
        // The checkpoint holds the temporal modules under the released key names, and the discriminator.
        let ckpt = dir.appendingPathComponent("Checkpoints/s3/checkpoint-1")
        let saved = try SafeTensorsFile(path: ckpt.appendingPathComponent("temporal_module.safetensors").path)
        let temporalKeys = stage.denoiser.namedParameters().map(\.0).filter { $0.contains("temporal_modules.") }
        #expect(Set(temporalKeys).isSubset(of: Set(saved.keys)) && saved.keys.allSatisfy { $0.contains("temporal_modules.") })
        #expect(FileManager.default.fileExists(atPath: ckpt.appendingPathComponent("discriminator.safetensors").path))
        #expect(!FileManager.default.fileExists(atPath: ckpt.appendingPathComponent("denoising_unet.safetensors").path))
        // The saved file initialises another stage's temporal modules exactly (temporal_module_path).
        let fresh = try UNet3DConditionModel({ var c = stage.denoiser.config; c.use_temporal_module = true; return c }())
        _ = try TemporalModuleInit.load(ckpt.appendingPathComponent("temporal_module.safetensors").path, into: fresh)
        let freshParams = Dictionary(fresh.namedParameters(), uniquingKeysWith: { a, _ in a })
        for (k, p) in stage.denoiser.namedParameters() where k.contains("temporal_modules.") {
            #expect(try p.maxAbsDiff(freshParams[k]!) == 0, "\(k) did not round-trip")
        }
        // The run folder loads for inference as the stage-2 denoiser with these temporal modules
        // (stage-1 CLIP and the frozen networks found along the chain of checkpoints).
        let model = try PersonaLiveModel.load(dir.appendingPathComponent("Checkpoints/s3").path)
        #expect(model.hasTemporalModules)
        #expect(model.sources.contains { $0.hasPrefix("temporal_module:") && $0.contains("Checkpoints/s3/checkpoint-1") })
        #expect(model.sources.contains { $0.hasPrefix("denoising_unet:") && $0.contains("Checkpoints/s2/checkpoint-1") })
        let loaded = Dictionary(model.denoiser.namedParameters(), uniquingKeysWith: { a, _ in a })
        for (k, p) in stage.denoiser.namedParameters() {
            let q = try #require(loaded[k], "\(k) not in the loaded denoiser")
            #expect(try p.maxAbsDiff(q) == 0, "\(k) differs in the loaded model")
        }
        let r = try #require(records(dir).last)
        #expect((r["optimizer_steps"] as? Double) == 2 && r["loss_mse"] != nil && r["loss_adv"] != nil && r["loss_d"] == nil)
    }

    @Test func clipsShorterThanTheSequenceAreAnError() throws {
        // Every train clip shorter than n_sample_frames: the error names the dataset and the lengths.
        let (dir, url) = try setUp(steps: 1, checkpointEvery: 1, nSampleFrames: 32)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = try TrainingConfig.load(path: url.path)
        do {
            _ = try StageFactory.make(cfg, logger: logger)
            Issue.record("a split without a clip of 32 frames was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("synth.h5") && text.contains("shorter than 32 frames") && text.contains("longest has 28"), "\(text)")
        }
        // n_sample_frames must hold whole chunks and at least one window.
        let bad = try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: "n_sample_frames: 32", with: "n_sample_frames: 12")
        try bad.write(to: url, atomically: true, encoding: .utf8)
        #expect(throws: TrainingError.self) { _ = try StageFactory.make(try TrainingConfig.load(path: url.path), logger: logger) }
    }

    /// The shipped configs decode (only their files are missing here), and the stage-3 section's
    /// errors name the key: an unknown key with the closest valid one, a window that does not match
    /// the timesteps.
    @Test func configsDecodeAndSectionErrorsNameTheKey() throws {
        for name in ["tiny", "sd15"] {
            let cfg = try TrainingConfig.load(path: TrainingTestPaths.packageRoot.appendingPathComponent("Configs/\(name)/stage3.yaml").path)
            #expect(cfg.stage == "stage3")
            let problems = StageFactory.problems(cfg, checkFiles: false)
            #expect(problems.allSatisfy { $0.contains("cuda") }, "Configs/\(name)/stage3.yaml: \(problems)")
            let section = try ConfigLoader.section(Stage3Section.self, cfg.stageSection, name: "stage3", file: cfg.sourcePath)
            #expect(section.timesteps_list == [999, 666, 333, 0] && section.temporal_window_size == 4 && cfg.data.n_sample_frames == 40)
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pl-s3c-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (extra, needle) in [("temporal_adaptive_stepp: 4", "did you mean 'temporal_adaptive_step'"),
                                ("temporal_adaptive_step: 3", "one chunk per noise level"),
                                ("d_start: -1", "expected a value >= 0")] {
            let url = dir.appendingPathComponent("s3.yaml")
            try """
                stage: stage3
                run_name: s3
                model: \(TrainingTestPaths.packageRoot.appendingPathComponent("Configs/tiny/model.yaml").path)
                data: {dataset: none.h5, n_sample_frames: 40}
                stage3:
                  stage2_checkpoint: none
                  lpips_weight: 0
                  \(extra)
                """.write(to: url, atomically: true, encoding: .utf8)
            let problems = StageFactory.problems(try TrainingConfig.load(path: url.path), checkFiles: false).joined(separator: "\n")
            #expect(problems.contains(needle), "\(extra): \(problems)")
        }
    }

    /// temporal_module_path takes our safetensors, a torch.save'd temporal_module.pth (as released)
    /// and an AnimateDiff-style file (motion_modules. keys with pe tables): each loads exactly.
    @Test func temporalModuleInitFromReleasedAndAnimateDiffFiles() throws {
        let python = try #require(TrainingTestPaths.python, "no Python at $PERSONALIVE_PYTHON or .venv/bin/python (make venv creates it)")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pl-s3t-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try TrainingConfig.load(path: TrainingTestPaths.packageRoot.appendingPathComponent("Configs/tiny/stage3.yaml").path).model
        var c = try ConfigLoader.section(UNet3DConditionModel.Config.self, model["denoising_unet"], name: "model.denoising_unet", file: "model.yaml")
        c.use_temporal_module = true
        let source = try RandomContext.with(try Generator(seed: 21)) { try UNet3DConditionModel(c) }
        let ours = dir.appendingPathComponent("temporal_module.safetensors").path
        try SafeTensors.write(source.temporalModuleSubset.stateDict(), to: ours)
        let script = """
            import sys, torch
            from safetensors.torch import load_file
            sd = load_file(sys.argv[1])
            torch.save(sd, sys.argv[2])
            ad = {k.replace("temporal_modules.", "motion_modules."): v for k, v in sd.items()}
            torch.save({"state_dict": ad}, sys.argv[3])
            print("ok", len(sd), sum(k.endswith("pos_encoder.pe") for k in ad))
            """
        let pth = dir.appendingPathComponent("temporal_module.pth").path, animateDiff = dir.appendingPathComponent("mm_sd.ckpt").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", script, ours, pth, animateDiff]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        try #require(p.terminationStatus == 0, "\(text)")
        let expected = Dictionary(source.temporalModuleSubset.namedParameters(), uniquingKeysWith: { a, _ in a })
        for file in [ours, pth, animateDiff] {
            let target = try RandomContext.with(try Generator(seed: 99)) { try UNet3DConditionModel(c) }
            let line = try TemporalModuleInit.load(file, into: target)
            #expect(file != animateDiff || line.contains("AnimateDiff"), "\(line)")
            for (k, t) in target.temporalModuleSubset.namedParameters() {
                #expect(try t.maxAbsDiff(expected[k]!) == 0, "\(file): \(k) differs")
            }
        }
        // A file without temporal or motion modules is refused, naming the key and the file.
        let wrong = dir.appendingPathComponent("wrong.safetensors").path
        try SafeTensors.write([("conv_in.weight", try Tensor.zeros([2]))], to: wrong)
        let target = try UNet3DConditionModel(c)
        #expect(throws: TrainingError.self) { _ = try TemporalModuleInit.load(wrong, into: target) }
    }

    /// Two clips uninterrupted; the same stopped at the clip boundary (checkpoint 1) and resumed;
    /// the same interrupted in the middle of clip 2 (after its first gradient slide: the clip
    /// finishes, the checkpoint lands after it) and resumed. Weights and losses agree bit for bit.
    @Test func resumeIsExactAtAClipBoundaryAndAfterAMidClipInterrupt() throws {
        let runs = try (0..<3).map { _ in try setUp(steps: 3, checkpointEvery: 1, dStart: 1) }
        defer { for r in runs { try? FileManager.default.removeItem(at: r.dir) } }
        func temporalAndD(_ stage: Stage3) throws -> [(String, Tensor)] {
            (stage.temporal.namedParameters() + stage.discriminator.namedParameters()).map { ($0.0, $0.1) }
        }
        // A: uninterrupted.
        let (cfgA, stageA) = try make(runs[0].config)
        try Trainer(config: cfgA, stage: stageA, logger: logger).run()
        // B: two clips, then a new process-like start resuming at the clip boundary.
        do {
            let (cfg, stage) = try make(runs[1].config)
            try Trainer(config: cfg, stage: stage, logger: logger).run(maxSteps: 2)
        }
        try Torch.manualSeed(999)
        let (cfgB, stageB) = try make(runs[1].config)
        try Trainer(config: cfgB, stage: stageB, logger: logger).run(resume: "latest")
        // C: interrupted after the first gradient slide of clip 2.
        do {
            let (cfg, stage) = try make(runs[2].config)
            let flag = InterruptFlag()
            stage.afterGradientSlide = { step, slide in if step == 1 && slide == 0 { flag.set() } }
            let reached = try Trainer(config: cfg, stage: stage, logger: logger, interrupt: flag).run()
            #expect(reached == 2, "the interrupted clip should finish and checkpoint at step 2, reached \(reached)")
        }
        try Torch.manualSeed(1234)
        let (cfgC, stageC) = try make(runs[2].config)
        try Trainer(config: cfgC, stage: stageC, logger: logger).run(resume: "latest")

        let a = try temporalAndD(stageA)
        for (name, other) in [("boundary", stageB), ("mid-clip", stageC)] {
            let b = try temporalAndD(other)
            #expect(a.count == b.count && !a.isEmpty)
            for (x, y) in zip(a, b) {
                let diff = try x.1.maxAbsDiff(y.1)
                #expect(x.0 == y.0 && diff == 0, "\(name): \(x.0) differs")
            }
        }
        for key in ["loss", "loss_mse", "loss_d"] {
            let la = records(runs[0].dir).compactMap { $0[key] as? Double }
            for r in runs.dropFirst() {
                let lb = records(r.dir).compactMap { $0[key] as? Double }
                #expect(!la.isEmpty && la == lb, "\(key) differs after resume:\n\(la)\n\(lb)")
            }
        }
        #expect(records(runs[0].dir).count == 3 && records(runs[1].dir).count == 3 && records(runs[2].dir).count == 3)
    }
}
