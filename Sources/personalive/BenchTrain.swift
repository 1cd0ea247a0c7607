// BenchTrain.swift — `personalive bench train --config FILE [--nproc N]`: steps/s of a stage and where the
// time goes (data wait, forward, backward, optimizer), so a stalling loader shows at once. With
// --nproc N (or under torchrun) it times data-parallel steps: samples/s over all ranks and the
// gradient all-reduce time per step (rank 0's, which includes waiting for the slowest rank).
import ArgumentParser
import Foundation
import Torch
import Training

struct BenchTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Time training steps of a config and split the time per phase.")

    @Option(help: "A training config (YAML).") var config: String
    @Option(help: "Steps to time (after the warm-up).") var steps: Int = 10
    @Option(help: "Untimed warm-up steps.") var warmup: Int = 2
    @Option(help: "Data-parallel workers to start on this machine (Gloo); the batch size is per worker.") var nproc: Int = 1
    @Option(help: ArgumentHelp("Also record the first timed step (one process) with LibTorch's profiler into this Chrome trace "
                               + "(chrome://tracing, Perfetto).", valueName: "file.json"))
    var profile: String?
    @OptionGroup var global: GlobalOptions

    func run() throws {
        guard nproc >= 1 else { throw ValidationError("--nproc must be at least 1") }
        guard profile == nil || warmup >= 1 else {
            throw ValidationError("--profile needs --warmup 1 or more: a run's first step also fills its caches")
        }
        let environment = try DistributedEnvironment.from(ProcessInfo.processInfo.environment)
        if nproc > 1 {
            guard profile == nil else { throw ValidationError("--profile records one process; leave out --nproc") }
            guard environment == nil else { throw ValidationError("--nproc starts its own workers, but WORLD_SIZE is already set") }
            let logger = try global.setUp(label: "bench")
            try TrainLauncher.run(arguments: TrainLauncher.workerArguments(), nproc: nproc, grace: 90, logger: logger)
            return
        }
        let parallel = environment.flatMap { $0.worldSize > 1 ? $0 : nil }
        let logger = try global.setUp(label: parallel.map { "bench.rank\($0.rank)" } ?? "bench")
        var cfg = try TrainingConfig.load(path: config)
        try StageFactory.validate(cfg, logger: logger)
        // Write nothing next to real runs: outputs go to a temporary folder.
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("personalive-bench-\(getpid())")
        defer { try? FileManager.default.removeItem(at: tmp) }
        cfg.output_dir = tmp.appendingPathComponent("Experiments").path
        cfg.checkpointing.output_dir = tmp.appendingPathComponent("Checkpoints").path
        cfg.checkpointing.checkpointing_steps = 0
        cfg.validation.validation_steps = 0
        cfg.solver.max_train_steps = warmup + steps
        if let threads = cfg.solver.threads, global.threads == nil { try Torch.setNumThreads(threads) }
        try Torch.manualSeed(cfg.seed)
        var dataParallel: DataParallel?
        if let e = parallel {
            cfg.rank = e.rank
            cfg.worldSize = e.worldSize
            // torchrun's convention: one GPU per local rank (`cuda` alone means cuda:LOCAL_RANK).
            if cfg.solver.device == "cuda" { cfg.solver.device = "cuda:\(e.localRank)" }
            dataParallel = try DataParallel(environment: e, backend: cfg.solver.device.hasPrefix("cuda") ? .nccl : .gloo,
                                            timeout: 120, logger: logger)
        }
        let stage = try StageFactory.make(cfg, logger: logger)
        let trainer = try Trainer(config: cfg, stage: stage, logger: logger)
        trainer.dataParallel = dataParallel
        var sums: [String: Double] = [:]
        var total = 0.0, timed = 0
        var reduceAtWarmup = 0.0
        // The profiled step is the first timed one: recording starts when the warm-up's last step
        // has finished and stops when that step has.
        var session: Profiler.Session?
        var profileError: Error?
        trainer.onEvent = { e in
            guard case .step(let r) = e else { return }
            if r.step == warmup {
                reduceAtWarmup = dataParallel?.allReduceSeconds ?? 0
                if let profile, session == nil {
                    do { session = try Profiler.Session(path: profile) } catch { profileError = error }
                }
            }
            if r.step == warmup + 1, let s = session {
                do { try s.end() } catch { profileError = error }
            }
            guard r.step > warmup else { return }
            timed += 1
            total += r.stepTime
            for (k, v) in r.timing { sums[k, default: 0] += v }
        }
        do {
            _ = try trainer.run()
        } catch {
            // A run that fails during the profiled step leaves no trace of a partial step behind.
            if let s = session, s.isRecording, let profile {
                try? s.end()
                try? FileManager.default.removeItem(atPath: profile)
            }
            throw error
        }
        try session?.end()
        if let profileError { throw CLIError("--profile \(profile ?? ""): \(profileError)") }
        if let dp = dataParallel, !dp.isMain { return }
        guard timed > 0 else { throw CLIError("no steps were timed") }
        let per = total / Double(timed)
        let world = dataParallel?.worldSize ?? 1
        let samplesPerStep = cfg.data.train_bs * world
        print(String(format: "%@ (stage %@, %d process%@ × batch %d): %.2f steps/s, %.1f ms/step, %.1f samples/s", config,
                     cfg.stage, world, world == 1 ? "" : "es", cfg.data.train_bs, 1 / per, per * 1000, Double(samplesPerStep) / per))
        let reduce = ((dataParallel?.allReduceSeconds ?? 0) - reduceAtWarmup) / Double(timed)
        print(String(format: "  all-reduce %6.1f ms/step  %5.1f%% (gradients averaged over %d process%@; inside 'optimizer')",
                     reduce * 1000, 100 * reduce / per, world, world == 1 ? "" : "es"))
        for k in ["data", "forward", "backward", "optimizer"] {
            let v = (sums[k] ?? 0) / Double(timed)
            print("  " + k.padding(toLength: 10, withPad: " ", startingAt: 0) + String(format: "%8.1f ms  %5.1f%%", v * 1000, 100 * v / per))
        }
        let other = per - ["data", "forward", "backward", "optimizer"].reduce(0) { $0 + (sums[$1] ?? 0) / Double(timed) }
        print("  other     " + String(format: "%8.1f ms  %5.1f%%", other * 1000, 100 * other / per))
        if let profile { print("trace of step \(warmup + 1) (with the profiler's overhead): \(profile)") }
    }
}
