// KillResumeTests.swift — a training process killed with SIGKILL at arbitrary points (including
// while a checkpoint is being written) always leaves complete checkpoints, and `--resume latest`
// continues from the newest one to the end.
import Foundation
import Testing
import Torch
@testable import Training

@Suite(.serialized) struct KillResumeTests {
    @Test func sigkillAtAnyPointLeavesAResumableRun() throws {
        let dir = try scratchWithDataset()
        defer { try? FileManager.default.removeItem(at: dir) }
        let steps = 200
        try tinyVAEConfig(steps: steps, checkpointEvery: 1).write(to: dir.appendingPathComponent("vae.yaml"),
                                                                  atomically: true, encoding: .utf8)
        let bin = try #require(TrainingTestPaths.binary)
        let manager = CheckpointManager(root: dir.appendingPathComponent("Checkpoints/vae"), keepLast: 3)
        let metricsURL = dir.appendingPathComponent("Experiments/vae/metrics.jsonl")
        func loggedSteps() -> Int { MetricsLog.read(metricsURL).count }
        func writingCheckpoint() -> Bool {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: manager.root.path)) ?? []
            return names.contains { $0.hasPrefix(".tmp-") }
        }
        var lastStep = -1
        // Kill points chosen by the run's progress, not by wall-clock delays, so every run is
        // killed on any machine: right after the start (model building), after a few more logged
        // steps (mid-run), and as soon as a checkpoint is seen being written (with one every step,
        // a temporary checkpoint folder shows up within a step or two).
        enum KillPoint { case atStart, afterSteps(Int), whileWritingCheckpoint }
        for point in [KillPoint.atStart, .afterSteps(3), .whileWritingCheckpoint, .afterSteps(5), .whileWritingCheckpoint] {
            let before = loggedSteps()
            let p = Process()
            p.executableURL = bin
            p.arguments = ["train", "vae.yaml", "--resume", "latest"]
            p.currentDirectoryURL = dir
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            let deadline = Date().addingTimeInterval(120)
            func reached() -> Bool {
                switch point {
                case .atStart: return true
                case .afterSteps(let n): return loggedSteps() >= before + n
                case .whileWritingCheckpoint: return writingCheckpoint() || loggedSteps() >= before + 10
                }
            }
            while p.isRunning && !reached() && Date() < deadline { usleep(1_000) }
            #expect(p.isRunning, "\(point): the run ended before it could be killed (\(loggedSteps()) of \(steps) steps logged)")
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(p.terminationReason == .uncaughtSignal, "\(point): not killed")
            // Every checkpoint folder that exists is complete and loadable.
            for c in manager.list() {
                let state = try CheckpointManager.readState(c.url)
                #expect(state.step == c.step)
                for file in ["vae.safetensors", "optimizer_model.safetensors"] {
                    _ = try SafeTensorsFile(path: c.url.appendingPathComponent(file).path)
                }
            }
            let newest = manager.list().last?.step ?? -1
            #expect(newest >= lastStep, "checkpoints went backwards: \(lastStep) → \(newest)")
            lastStep = newest
        }
        #expect(lastStep < steps, "the killed runs finished the training")
        let (status, out) = try runCLI(["train", "vae.yaml", "--resume", "latest"], in: dir)
        #expect(status == 0, "\(out)")
        #expect(manager.list().last?.step == steps)
        let metrics = MetricsLog.read(dir.appendingPathComponent("Experiments/vae/metrics.jsonl"))
            .compactMap { $0["step"] as? Int }
        #expect(metrics == Array(1...steps), "each step is logged once, in order")
    }

    @Test func sigtermWritesACheckpointAndExitsCleanly() throws {
        let dir = try scratchWithDataset()
        defer { try? FileManager.default.removeItem(at: dir) }
        try tinyVAEConfig(steps: 100_000, checkpointEvery: 0).write(to: dir.appendingPathComponent("vae.yaml"),
                                                                   atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = try #require(TrainingTestPaths.binary)
        p.arguments = ["train", "vae.yaml"]
        p.currentDirectoryURL = dir
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let manager = CheckpointManager(root: dir.appendingPathComponent("Checkpoints/vae"), keepLast: 3)
        let metrics = dir.appendingPathComponent("Experiments/vae/metrics.jsonl")
        let deadline = Date().addingTimeInterval(60)
        while MetricsLog.read(metrics).count < 3 && Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let c = try #require(manager.list().last)
        #expect(c.step >= 3)
        #expect(try CheckpointManager.readState(c.url).step == c.step)
    }

    @Test func configValidateNamesProblems() throws {
        let dir = try scratchWithDataset(clips: 3, frames: 8)
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = tinyVAEConfig(steps: 2, checkpointEvery: 1)
        try good.write(to: dir.appendingPathComponent("ok.yaml"), atomically: true, encoding: .utf8)
        #expect(try runCLI(["config", "validate", "ok.yaml"], in: dir).0 == 0)
        let typo = good.replacingOccurrences(of: "train_bs", with: "train_bz")
        try typo.write(to: dir.appendingPathComponent("typo.yaml"), atomically: true, encoding: .utf8)
        let (s1, o1) = try runCLI(["config", "validate", "typo.yaml"], in: dir)
        #expect(s1 != 0 && o1.contains("data.train_bz") && o1.contains("did you mean 'train_bs'"), "\(o1)")
        let missing = good.replacingOccurrences(of: "Datasets/synth.h5", with: "Datasets/none.h5")
        try missing.write(to: dir.appendingPathComponent("missing.yaml"), atomically: true, encoding: .utf8)
        let (s2, o2) = try runCLI(["config", "validate", "missing.yaml"], in: dir)
        #expect(s2 != 0 && o2.contains("Datasets/none.h5"), "\(o2)")
    }
}
