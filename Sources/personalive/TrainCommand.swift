// TrainCommand.swift — `personalive train CONFIG [--resume latest|PATH] [--max-steps N] [--nproc N]` and
// `personalive config validate FILE`: the stage comes from the config. Under torchrun's environment
// (WORLD_SIZE > 1) it is one data-parallel worker; `--nproc N` starts N such workers itself.
import ArgumentParser
import Foundation
import Logging
import Torch
import Training

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Check training configs.", subcommands: [Validate.self])

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run exactly the checks `train` runs before it starts (keys, types, values, referenced files).")
        @Argument(help: "A training config (YAML).") var file: String
        @OptionGroup var global: GlobalOptions

        func run() throws {
            let logger = try global.setUp(label: "config")
            let config = try TrainingConfig.load(path: file)
            try StageFactory.validate(config, logger: logger)
            print("\(file): OK (stage \(config.stage), run \(config.run_name), \(config.solver.max_train_steps) steps)")
        }
    }
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a stage from a config (vae, motion_extractor, unet, stage1, stage2, stage3).")

    @Argument(help: "A training config (YAML), e.g. Configs/tiny/stage1.yaml.") var config: String
    @Option(help: "Resume from 'latest' (the newest complete checkpoint of this run) or a checkpoint folder.")
    var resume: String?
    @Option(help: "Stop after this many optimizer steps (default: solver.max_train_steps).") var maxSteps: Int?
    @Option(help: "Data-parallel workers to start on this machine (each gets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT as under torchrun; the batch size is per worker).")
    var nproc: Int?
    @Option(help: "Seconds a rendezvous or collective may take before the run stops with an error.")
    var distTimeout: Double = 300
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if let n = nproc, n < 1 { throw ValidationError("--nproc must be at least 1 (got \(n))") }
        if distTimeout <= 0 { throw ValidationError("--dist-timeout must be positive") }
    }

    func run() throws {
        let environment = try DistributedEnvironment.from(ProcessInfo.processInfo.environment)
        if let n = nproc, n > 1 {
            guard environment == nil else {
                throw ValidationError("--nproc \(n) starts its own workers, but WORLD_SIZE is already set (torchrun's "
                                      + "environment); use one or the other")
            }
            let logger = try global.setUp(label: "train")
            // The config is checked once here, so that a bad one fails before any worker starts.
            try StageFactory.validate(try TrainingConfig.load(path: config), logger: logger)
            try TrainLauncher.run(arguments: TrainLauncher.workerArguments(), nproc: n, grace: distTimeout + 30, logger: logger)
            return
        }
        let parallel = environment.flatMap { $0.worldSize > 1 ? $0 : nil }
        let logger = try global.setUp(label: parallel.map { "train.rank\($0.rank)" } ?? "train")
        var cfg = try TrainingConfig.load(path: config)
        try StageFactory.validate(cfg, logger: logger)
        if let threads = cfg.solver.threads, global.threads == nil { try Torch.setNumThreads(threads) }
        try Torch.manualSeed(cfg.seed)
        var dataParallel: DataParallel?
        if let e = parallel {
            cfg.rank = e.rank
            cfg.worldSize = e.worldSize
            // torchrun's convention: one GPU per local rank (`cuda` alone means cuda:LOCAL_RANK).
            if cfg.solver.device == "cuda" { cfg.solver.device = "cuda:\(e.localRank)" }
            let backend: DistributedBackend = cfg.solver.device.hasPrefix("cuda") ? .nccl : .gloo
            dataParallel = try DataParallel(environment: e, backend: backend, timeout: distTimeout, logger: logger)
        }
        let stage = try StageFactory.make(cfg, logger: logger)
        let trainer = try Trainer(config: cfg, stage: stage, logger: logger)
        trainer.dataParallel = dataParallel
        trainer.interrupt.installSignalHandlers()
        let progress = ProgressReporter(logger: logger)
        trainer.onEvent = progress.handle
        let step = try trainer.run(maxSteps: maxSteps, resume: resume)
        if let dp = dataParallel {
            if dp.allReduceCount > 0 {
                let each = String(format: "%.1f ms each", 1000 * dp.allReduceSeconds / Double(dp.allReduceCount))
                logger.info("rank \(dp.rank): \(dp.allReduceCount) gradient all-reduces, \(each)")
            }
            guard dp.isMain else { return }
        }
        print("run: \(trainer.runDirectory.path) (metrics.jsonl, loss_curve.png, validation/)")
        print("checkpoints: \(trainer.checkpoints.root.path)" + (trainer.checkpoints.latest().map { " (latest: \($0.lastPathComponent))" } ?? ""))
        if trainer.interrupt.isSet {
            print("interrupted at step \(step); resume with --resume latest")
        }
    }
}

/// A progress bar on a terminal (step/total, loss, lr, it/s, ETA); plain periodic lines otherwise.
final class ProgressReporter {
    let logger: Logger
    let tty = isatty(STDERR_FILENO) != 0
    var start = Date()
    var startStep = 0
    var lastLine = Date.distantPast

    init(logger: Logger) { self.logger = logger }

    func handle(_ e: TrainingEvent) {
        switch e {
        case .started(let s, let total, let from):
            start = Date()
            startStep = s
            let note = from.map { " (resumed from \($0.path))" } ?? ""
            logger.info("training steps \(s)→\(total)\(note)")
        case .step(let r):
            let done = r.step - startStep
            let elapsed = Date().timeIntervalSince(start)
            let rate = Double(done) / max(elapsed, 1e-9)
            let eta = Double(r.totalSteps - r.step) / max(rate, 1e-9)
            let loss = r.losses["loss"] ?? .nan
            if tty {
                let width = 28, filled = Int(Double(width) * Double(r.step) / Double(max(r.totalSteps, 1)))
                let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
                let line = String(format: "\r%@ %d/%d loss %.4f lr %.2e %.2f it/s ETA %@ ", bar, r.step, r.totalSteps,
                                  loss, r.lr, rate, formatDuration(eta))
                FileHandle.standardError.write(Data(line.utf8))
            } else if Date().timeIntervalSince(lastLine) > 10 || r.step == r.totalSteps {
                lastLine = Date()
                print(String(format: "step %d/%d loss %.5f lr %.3e grad_norm %.3f %.2f it/s ETA %@", r.step, r.totalSteps,
                             loss, r.lr, r.gradNorm, rate, formatDuration(eta)))
                fflush(stdout)
            }
        case .validation(let step, let metrics, let dir):
            if tty { FileHandle.standardError.write(Data("\n".utf8)) }
            let m = metrics.keys.sorted().map { String(format: "%@ %.5g", $0, metrics[$0]!) }.joined(separator: ", ")
            print("validation at step \(step): \(m) → \(dir.path)")
        case .checkpoint(let step, let url):
            if tty { FileHandle.standardError.write(Data("\n".utf8)) }
            logger.info("checkpoint at step \(step): \(url.path)")
        case .interrupted(let step):
            if tty { FileHandle.standardError.write(Data("\n".utf8)) }
            logger.notice("interrupted: checkpoint written at step \(step)")
        case .finished(let step):
            if tty { FileHandle.standardError.write(Data("\n".utf8)) }
            logger.info("finished at step \(step) in \(formatDuration(Date().timeIntervalSince(start)))")
        }
    }
}

func formatDuration(_ s: Double) -> String {
    guard s.isFinite else { return "?" }
    let t = Int(s.rounded())
    return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
}
