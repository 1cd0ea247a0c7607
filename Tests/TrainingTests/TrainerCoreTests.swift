// TrainerCoreTests.swift — the shared trainer on a small regression stage: the loss falls,
// resume reproduces an uninterrupted run exactly, NaN stops with the step named, configs fail
// with the key named, checkpoints load in PyTorch.
import Foundation
import Inference
import Logging
import NN
import Testing
import Torch
@testable import Training

/// y = W* x + noise, learned by a two-layer MLP with dropout (exercises both RNG streams).
final class RegressionStage: TrainingStage {
    final class Net: Module {
        let fc1: Linear
        let drop: Dropout
        let fc2: Linear
        init(hidden: Int) throws {
            fc1 = try Linear(4, hidden)
            drop = Dropout(0.1)
            fc2 = try Linear(hidden, 2)
        }
        func callAsFunction(_ x: Tensor) throws -> Tensor { try fc2(drop(fc1(x).silu())) }
    }
    let net: Net
    let target: Tensor
    var nanAtSample: Int?
    let batchSize = 8
    var precision = Precision()

    init() throws {
        let g = try Generator(seed: 7)
        let n = try Net(hidden: 16)
        try Torch.noGrad {
            for (_, p) in n.namedParameters() { try p.uniform_(-0.3, 0.3, generator: g) }
        }
        net = n
        target = try Tensor.randn([2, 4], generator: g)
    }

    var savedModules: [(String, Module)] { [("net", net)] }
    var trainableParameters: [(String, Tensor)] { net.namedParameters().map { ("net.\($0.0)", $0.1) } }

    func losses(sample: Int, generator: Generator) throws -> [String: Tensor] {
        // The batch is a pure function of its position in the data stream.
        let dataGen = try Generator(seed: UInt64(1000 + sample))
        let x = try Tensor.randn([batchSize, 4], generator: dataGen)
        let noise = try Tensor.randn([batchSize, 2], generator: generator) * 0.01
        let y = try x.matmul(target.transpose(0, 1)) + noise
        var mse = try F.mseLoss(net(x), y)
        if let n = nanAtSample, sample >= n { mse = try mse * Double.nan }
        let l1 = try F.l1Loss(net.fc1.weight, Tensor.zeros(net.fc1.weight.shape)) * 1e-3
        return ["loss": try mse + l1, "mse": mse, "l1": l1]
    }

    func validate(step: Int, directory: URL, logger: Logger) throws -> [String: Double] {
        let g = try Generator(seed: 99)
        let x = try Tensor.randn([64, 4], generator: g)
        return ["mse": try F.mseLoss(net(x), x.matmul(target.transpose(0, 1))).item()]
    }
}

func tempDir() -> URL {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("pl-train-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    return u
}

func config(in dir: URL, steps: Int, checkpointEvery: Int = 5) -> TrainingConfig {
    var c = TrainingConfig(stage: "stage1", run_name: "reg")
    c.output_dir = dir.appendingPathComponent("Experiments").path
    c.checkpointing.output_dir = dir.appendingPathComponent("Checkpoints").path
    c.checkpointing.checkpointing_steps = checkpointEvery
    c.checkpointing.keep_last = 2
    c.validation.validation_steps = 10
    c.solver.learning_rate = 3e-2
    c.solver.lr_scheduler = "cosine"
    c.solver.lr_warmup_steps = 2
    c.solver.max_train_steps = steps
    c.solver.use_ema = true
    c.solver.ema_decay = 0.99
    c.solver.gradient_accumulation_steps = 2
    c.seed = 5
    return c
}

func losses(_ dir: URL) -> [Double] {
    MetricsLog.read(dir.appendingPathComponent("Experiments/reg/metrics.jsonl"))
        .filter { $0["validation"] == nil }.compactMap { $0["loss"] as? Double }
}

/// The global generator and grad mode are process-wide: run these one at a time.
@Suite(.serialized) struct TrainerCoreTests {
    let logger = Logger(label: "test")

    @Test func lossFallsAndOutputsAreWritten() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Torch.manualSeed(1)
        let trainer = try Trainer(config: config(in: dir, steps: 30), stage: RegressionStage(), logger: logger)
        #expect(try trainer.run() == 30)
        let l = losses(dir)
        #expect(l.count == 30)
        let first = l.prefix(5).reduce(0, +) / 5, last = l.suffix(5).reduce(0, +) / 5
        #expect(last < first * 0.5, "loss did not fall: \(first) → \(last)")
        let run = dir.appendingPathComponent("Experiments/reg")
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("loss_curve.png").path))
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("config.yaml").path))
        // keep_last = 2: only the two newest checkpoints remain
        let cps = CheckpointManager(root: dir.appendingPathComponent("Checkpoints/reg"), keepLast: 2).list().map(\.step)
        #expect(cps == [25, 30])
        let records = MetricsLog.read(run.appendingPathComponent("metrics.jsonl"))
        // A fresh run validates at step 0 first; then one record per step.
        #expect(records.first?["validation"] as? Bool == true && records.first?["step"] as? Int == 0)
        let record = try #require(records.first { $0["validation"] == nil })
        for key in ["step", "loss", "mse", "l1", "lr", "grad_norm", "step_time", "samples_per_s"] {
            #expect(record[key] != nil, "metrics.jsonl lacks \(key)")
        }
    }

    @Test func resumeReproducesTheUninterruptedRun() throws {
        let a = tempDir(), b = tempDir()
        defer { try? FileManager.default.removeItem(at: a); try? FileManager.default.removeItem(at: b) }
        try Torch.manualSeed(3)
        try Trainer(config: config(in: a, steps: 20), stage: RegressionStage(), logger: logger).run()
        try Torch.manualSeed(3)
        try Trainer(config: config(in: b, steps: 20), stage: RegressionStage(), logger: logger).run(maxSteps: 10)
        try Torch.manualSeed(12345)  // the global RNG state must come from the checkpoint
        try Trainer(config: config(in: b, steps: 20), stage: RegressionStage(), logger: logger).run(resume: "latest")
        let la = losses(a), lb = losses(b)
        #expect(la.count == 20 && lb.count == 20)
        #expect(la == lb, "resumed losses differ:\n\(la)\n\(lb)")
    }

    @Test func nonFiniteLossStopsWithStepAndTermNamed() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stage = try RegressionStage()
        stage.nanAtSample = 7 * 2 * 8  // step 8 (1-based), first micro-batch
        let trainer = try Trainer(config: config(in: dir, steps: 20), stage: stage, logger: logger)
        do {
            try trainer.run()
            Issue.record("a NaN loss did not stop the run")
        } catch let e as TrainingError {
            #expect("\(e)".contains("step 8"))
            #expect("\(e)".contains("'loss'") || "\(e)".contains("'mse'"))
        }
        let cps = trainer.checkpoints.list().map(\.step)
        #expect(cps == [5], "the last good checkpoint must stay: \(cps)")
    }

    @Test func interruptWritesACheckpointAndStops() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let trainer = try Trainer(config: config(in: dir, steps: 50, checkpointEvery: 100), stage: RegressionStage(), logger: logger)
        trainer.onEvent = { if case .step(let r) = $0, r.step == 3 { trainer.interrupt.set() } }
        #expect(try trainer.run() == 3)
        #expect(trainer.checkpoints.list().map(\.step) == [3])
    }

    @Test func checkpointLoadsInPyTorch() throws {
        let python = try #require(TrainingTestPaths.python, "no Python at $PERSONALIVE_PYTHON or .venv/bin/python (make venv creates it)")
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stage = try RegressionStage()
        try Trainer(config: config(in: dir, steps: 5), stage: stage, logger: logger).run()
        let ckpt = dir.appendingPathComponent("Checkpoints/reg/checkpoint-5")
        let script = """
            import sys, torch
            from safetensors.torch import load_file
            sd = load_file(sys.argv[1] + "/net.safetensors")
            net = torch.nn.Sequential()
            net.add_module("fc1", torch.nn.Linear(4, 16)); net.add_module("drop", torch.nn.Dropout(0.1)); net.add_module("fc2", torch.nn.Linear(16, 2))
            net.load_state_dict(sd, strict=True)
            opt = load_file(sys.argv[1] + "/optimizer_model.safetensors")
            print("ok", len(sd), float(sd["fc2.bias"][0]), len(opt))
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", script, ckpt.path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "\(text)")
        let parts = text.split(separator: " ")
        #expect(parts.first == "ok")
        let bias = try stage.net.fc2.bias!.toArray(Float.self)[0]
        #expect(abs((Double(parts[2]) ?? .nan) - Double(bias)) < 1e-6)
    }

    @Test func configErrorsNameTheKey() throws {
        let base = """
            stage: stage1
            run_name: x
            solver:
              learning_rate: 1e-5
              max_train_steps: 10
            """
        #expect(try ConfigLoader.decode(TrainingConfig.self, yaml: base, file: "c.yaml").solver.learning_rate == 1e-5)
        let typo = base.replacingOccurrences(of: "learning_rate", with: "learning_rte")
        #expect { try ConfigLoader.decode(TrainingConfig.self, yaml: typo, file: "c.yaml") } throws: { e in
            let s = "\(e)"
            return s.contains("solver.learning_rte") && s.contains("did you mean 'learning_rate'") && s.contains("c.yaml")
        }
        let wrongType = base.replacingOccurrences(of: "max_train_steps: 10", with: "max_train_steps: many")
        #expect { try ConfigLoader.decode(TrainingConfig.self, yaml: wrongType, file: "c.yaml") } throws: { e in
            "\(e)".contains("solver.max_train_steps") && "\(e)".contains("integer")
        }
        let badStage = base.replacingOccurrences(of: "stage: stage1", with: "stage: stag1")
        #expect { try ConfigLoader.decode(TrainingConfig.self, yaml: badStage, file: "c.yaml") } throws: { e in
            "\(e)".contains("stage1")
        }
        var c = try ConfigLoader.decode(TrainingConfig.self, yaml: base, file: "c.yaml")
        c.solver.lr_scheduler = "cosin"
        c.data.color_jitter = [0.2, 0.2]
        c.validation.num_frames = -1
        c.validation.guidance_scale = 0.5
        c.stageSection = .object(["keypoint_radius": .number(-1)])
        let problems = c.problems(requiredFiles: [("data.dataset", "/no/such/file.h5")])
        #expect(problems.contains { $0.contains("lr_scheduler") })
        #expect(problems.contains { $0.contains("data.color_jitter") })
        #expect(problems.contains { $0.contains("validation.num_frames") })
        #expect(problems.contains { $0.contains("validation.guidance_scale") && $0.contains(">= 1") })
        // The stage section's own checks: what `train` and `config validate` report.
        #expect(StageFactory.problems(c, checkFiles: false).contains { $0.contains("keypoint_radius") && $0.contains(">= 0") })
        c.stageSection = .object(["snr_gamma": .number(-1)])
        #expect(StageFactory.problems(c, checkFiles: false).contains { $0.contains("snr_gamma") && $0.contains(">= 0") })
        c.stageSection = .object(["guidance_uncond": .array([.string("pose"), .string("refrence")])])
        #expect(StageFactory.problems(c, checkFiles: false).contains {
            $0.contains("guidance_uncond") && $0.contains("reference, pose, motion") && $0.contains("refrence")
        })
        #expect(problems.contains { $0.contains("data.dataset") && $0.contains("/no/such/file.h5") })
        #expect(!problems.contains { $0.contains("cache_latents") })
        c.data.cache_latents = true
        c.stage = "vae"
        #expect(c.problems().contains { $0.contains("data.cache_latents") && $0.contains("'vae'") })
    }

    /// Every training config the project ships decodes strictly (stage sections included) and
    /// passes the value checks; only the files it names may be missing (weights users fill in).
    @Test func shippedConfigsAreValid() throws {
        let root = TrainingTestPaths.packageRoot
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var checked = 0
        for size in ["tiny", "sd15"] {
            let folder = root.appendingPathComponent("Configs/\(size)")
            for name in try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() where name.hasSuffix(".yaml") {
                let text = try String(contentsOfFile: folder.appendingPathComponent(name).path, encoding: .utf8)
                guard text.contains("\nstage: ") else { continue }
                // `model: Configs/…` is relative to the project root (where make runs).
                let copy = dir.appendingPathComponent("\(size)-\(name)")
                try text.replacingOccurrences(of: "\nmodel: Configs/", with: "\nmodel: \(root.path)/Configs/")
                    .write(to: copy, atomically: true, encoding: .utf8)
                let c = try TrainingConfig.load(path: copy.path)
                // The sd15 configs train on CUDA, which this machine may lack.
                let problems = StageFactory.problems(c, checkFiles: false).filter { !$0.contains("has no CUDA device") }
                #expect(problems.isEmpty, "Configs/\(size)/\(name): \(problems)")
                checked += 1
            }
        }
        #expect(checked >= 5)
    }

    @Test func freezeByPatternPerModule() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var c = config(in: dir, steps: 3)
        c.freeze = ["net": ["fc1.*"]]
        let stage = try RegressionStage()
        let before1 = try stage.net.fc1.weight.clone(), before2 = try stage.net.fc2.weight.clone()
        try Trainer(config: c, stage: stage, logger: logger).run()
        #expect(try stage.net.fc1.weight.maxAbsDiff(before1) == 0)
        #expect(try stage.net.fc2.weight.maxAbsDiff(before2) > 0)
        c.freeze = ["nett": ["*"]]
        #expect { try Trainer(config: c, stage: RegressionStage(), logger: logger) } throws: { "\($0)".contains("freeze.nett") }
    }

    @Test func lrSchedulesMatchDiffusers() throws {
        let cos = try LRSchedule(kind: "cosine", baseLR: 1, warmupSteps: 10, totalSteps: 110)
        #expect(cos.factor(at: 0) == 0)
        #expect(cos.factor(at: 5) == 0.5)
        #expect(abs(cos.factor(at: 60) - 0.5) < 1e-12)
        #expect(abs(cos.factor(at: 110)) < 1e-12)
        let warm = try LRSchedule(kind: "constant_with_warmup", baseLR: 2, warmupSteps: 4, totalSteps: 10)
        #expect(warm.learningRate(at: 1) == 0.5)
        #expect(warm.learningRate(at: 9) == 2)
        #expect(throws: ConfigError.self) { try LRSchedule(kind: "cosin", baseLR: 1, warmupSteps: 0, totalSteps: 1) }
    }

    @Test func emaFollowsDiffusersDecay() throws {
        let p = try Tensor([Float(1)], shape: [1])
        let ema = try EMAModel(parameters: [("p", p)], decay: 0.5)
        #expect(ema.currentDecay(1) == 0)
        #expect(abs(ema.currentDecay(3) - 3.0 / 12.0) < 1e-12)
        try p.fill_(3)
        try ema.step([("p", p)])  // decay 0 → copies
        #expect(try ema.shadow[0].1.item() == 3)
        try p.fill_(5)
        try ema.step([("p", p)])  // decay 2/11 → 3·2/11 + 5·9/11
        #expect(abs(try ema.shadow[0].1.item() - (3 * 2.0 / 11 + 5 * 9.0 / 11)) < 1e-6)
    }
}
