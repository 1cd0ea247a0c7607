// BenchTrain.swift — `personalive bench train --config FILE`: steps/s of a stage and where the
// time goes (data wait, forward, backward, optimizer), so a stalling loader shows at once.
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
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let logger = try global.setUp(label: "bench")
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
        try Torch.manualSeed(cfg.seed)
        let stage = try StageFactory.make(cfg, logger: logger)
        let trainer = try Trainer(config: cfg, stage: stage, logger: logger)
        var sums: [String: Double] = [:]
        var total = 0.0, timed = 0
        trainer.onEvent = { e in
            guard case .step(let r) = e, r.step > warmup else { return }
            timed += 1
            total += r.stepTime
            for (k, v) in r.timing { sums[k, default: 0] += v }
        }
        _ = try trainer.run()
        guard timed > 0 else { throw CLIError("no steps were timed") }
        let per = total / Double(timed)
        print(String(format: "%@ (stage %@, batch %d): %.2f steps/s, %.1f ms/step, %.1f samples/s", config, cfg.stage,
                     cfg.data.train_bs, 1 / per, per * 1000, Double(cfg.data.train_bs) / per))
        for k in ["data", "forward", "backward", "optimizer"] {
            let v = (sums[k] ?? 0) / Double(timed)
            print("  " + k.padding(toLength: 10, withPad: " ", startingAt: 0) + String(format: "%8.1f ms  %5.1f%%", v * 1000, 100 * v / per))
        }
        let other = per - ["data", "forward", "backward", "optimizer"].reduce(0) { $0 + (sums[$1] ?? 0) / Double(timed) }
        print("  other     " + String(format: "%8.1f ms  %5.1f%%", other * 1000, 100 * other / per))
    }
}
