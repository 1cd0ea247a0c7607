// DataParallelTests.swift — data-parallel training over c10d Gloo (DataParallel.swift, the
// `train --nproc` launcher and torchrun-style environment launch): two processes at batch b train
// the same weights as one process at batch 2b on the same samples; a killed worker makes the others
// stop with an error naming it, leaves complete checkpoints, and `--resume latest` continues.
import Foundation
import Logging
import NN
import Testing
import Torch
@testable import Training

/// The tiny test VAE, deterministic (posterior mean), one LibTorch thread per process, clipping on.
/// Adam's epsilon is 1e-6: at 1e-8 its normalisation turns the fp32 round-off of near-zero
/// gradient entries (batch 4 vs 2 + 2 sum in another order) into ±lr-sized steps (measured: 7e-5
/// after 4 steps at eps 1e-8, 8e-7 at eps 1e-6, against 2e-3 of weight change per 2 steps).
private func ddpConfig(run: String, batch: Int, steps: Int, checkpointEvery: Int) -> String {
    tinyVAEConfig(steps: steps, checkpointEvery: checkpointEvery, run: run)
        .replacingOccurrences(of: "train_bs: 2", with: "train_bs: \(batch)")
        .replacingOccurrences(of: "  max_train_steps:", with: "  threads: 1\n  max_grad_norm: 0.05\n  adam_epsilon: 1.0e-6\n  max_train_steps:")
        + "\n  sample_posterior: false\n"
}

/// The largest difference between two weight files' tensors, relative to each tensor's scale
/// (max |w|, at least 1: BatchNorm running variances can be large); with the worst key.
private func maxDifference(_ a: URL, _ b: URL) throws -> (Double, Int, String) {
    let x = try SafeTensorsFile(path: a.path).loadAll(), y = try SafeTensorsFile(path: b.path).loadAll()
    var worst = 0.0, worstKey = ""
    for (k, t) in x where t.dtype.isFloatingPoint {
        let u = try #require(y[k], "\(k) missing in \(b.path)")
        let d: Double = try (t - u).abs().max().item() / max(1, try t.abs().max().item())
        if d > worst { (worst, worstKey) = (d, k) }
    }
    return (worst, x.count, worstKey)
}

/// A port on 127.0.0.1 free right now.
private func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    try #require(ok, "cannot bind a socket on 127.0.0.1")
    return Int(UInt16(bigEndian: addr.sin_port))
}

private final class RankResult<T>: @unchecked Sendable {
    var value: T?
    var error: Error?
}

/// Runs `body` on two ranks, each a thread of this process with its own DataParallel (Gloo on a
/// free loopback port), and returns their results in rank order; a rank's error is rethrown.
private func onTwoRanks<T>(timeout: Double = 120, _ body: @escaping @Sendable (_ rank: Int, _ dp: DataParallel) throws -> T) throws -> [T] {
    let port = try freePort()
    let results = [RankResult<T>(), RankResult<T>()]
    let done = DispatchSemaphore(value: 0)
    for rank in 0..<2 {
        let r = results[rank]
        Thread {
            defer { done.signal() }
            do {
                let env = DistributedEnvironment(rank: rank, worldSize: 2, localRank: rank, masterAddr: "127.0.0.1", masterPort: port)
                r.value = try body(rank, try DataParallel(environment: env, timeout: 30, logger: Logger(label: "test")))
            } catch {
                r.error = error
            }
        }.start()
    }
    for _ in 0..<2 where done.wait(timeout: .now() + timeout) != .success {
        throw TrainingError.invalid("a rank did not finish within \(Int(timeout)) s")
    }
    return try results.enumerated().map { rank, r in
        if let e = r.error { throw TrainingError.invalid("rank \(rank) failed: \(e)") }
        guard let v = r.value else { throw TrainingError.invalid("rank \(rank) returned nothing") }
        return v
    }
}

@Suite(.serialized) struct DataParallelTests {
    @Test func environmentFollowsTorchrun() throws {
        #expect(try DistributedEnvironment.from([:]) == nil)
        let e = try #require(try DistributedEnvironment.from(["RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                                                               "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"]))
        #expect(e == DistributedEnvironment(rank: 1, worldSize: 2, localRank: 1, masterAddr: "10.0.0.1", masterPort: 29500))
        #expect(throws: TrainingError.self) { try DistributedEnvironment.from(["WORLD_SIZE": "2", "RANK": "2",
                                                                               "MASTER_ADDR": "a", "MASTER_PORT": "1"]) }
        #expect(throws: TrainingError.self) { try DistributedEnvironment.from(["WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "1"]) }
        #expect(throws: TrainingError.self) { try DistributedEnvironment.from(["WORLD_SIZE": "x"]) }
    }

    /// 1 process at batch 4 for 4 steps vs 2 processes at batch 2 (2 steps, then resumed for 2 more):
    /// the same weights within fp32 tolerance; 1 process at batch 2 is clearly different.
    @Test func twoProcessesMatchOneAtDoubleBatch() throws {
        #expect(DistributedBackend.gloo.isAvailable, "this build has no Gloo (libgloo-dev missing at build time)")
        let dir = try scratchWithDataset()
        defer { try? FileManager.default.removeItem(at: dir) }
        let steps = 4
        for (run, batch) in [("single", 4), ("ddp", 2), ("half", 2)] {
            try ddpConfig(run: run, batch: batch, steps: steps, checkpointEvery: 2)
                .write(to: dir.appendingPathComponent("\(run).yaml"), atomically: true, encoding: .utf8)
        }
        var (status, out) = try runCLI(["train", "single.yaml"], in: dir)
        try #require(status == 0, "\(out)")
        (status, out) = try runCLI(["train", "half.yaml"], in: dir)
        try #require(status == 0, "\(out)")
        (status, out) = try runCLI(["train", "ddp.yaml", "--nproc", "2", "--max-steps", "2", "--dist-timeout", "60"], in: dir)
        try #require(status == 0, "\(out)")
        // The world size is part of the resume state: one process may not continue a 2-process run.
        (status, out) = try runCLI(["train", "ddp.yaml", "--resume", "latest"], in: dir)
        #expect(status != 0 && out.contains("2 processes") && out.contains("--nproc 2"), "\(out)")
        (status, out) = try runCLI(["train", "ddp.yaml", "--nproc", "2", "--resume", "latest", "--dist-timeout", "60"], in: dir)
        try #require(status == 0, "\(out)")

        let ckpt = { (run: String) in dir.appendingPathComponent("Checkpoints/\(run)/checkpoint-\(steps)/vae.safetensors") }
        let (diff, count, _) = try maxDifference(ckpt("single"), ckpt("ddp"))
        let (control, _, _) = try maxDifference(ckpt("single"), ckpt("half"))
        print("data parallel: max |w_1proc,bs4 - w_2proc,bs2| = \(diff) over \(count) tensors (1 proc at bs 2: \(control))")
        #expect(count > 10)
        #expect(diff < 5e-6, "2 processes at batch 2 differ from 1 at batch 4 by \(diff)")
        #expect(control > 100 * max(diff, 1e-7), "the control run (batch 2) is not distinguishable: \(control)")

        // Only rank 0 wrote metrics (each step once) and the checkpoint holds both ranks' states.
        let logged = MetricsLog.read(dir.appendingPathComponent("Experiments/ddp/metrics.jsonl")).compactMap { $0["step"] as? Int }
        #expect(logged == Array(1...steps), "\(logged)")
        let state = try CheckpointManager.readState(dir.appendingPathComponent("Checkpoints/ddp/checkpoint-\(steps)"))
        #expect(state.world_size == 2)
        #expect(state.ranks?.map(\.rank) == [0, 1])
        #expect(state.ranks?[0].rng_generator != state.ranks?[1].rng_generator, "ranks share one noise stream")
    }

    /// The tiny stage 1 (denoising and reference UNets, pose guider, motion encoder with
    /// BatchNorm, VAE posterior sampling, noise, timesteps, reference-bank token drops and dropout
    /// decisions all drawn at random): 2 processes at batch 2 with `sync_batchnorm` train the same
    /// weights as 1 process at batch 4, across a resume; 1 process at batch 2 clearly does not.
    /// Measured: at most 1.7e-5 of each tensor's scale after 4 steps (losses agree to 1e-7),
    /// against 1.7e-3 or more for the control.
    @Test func stage1TwoProcessesMatchOneAtDoubleBatch() throws {
        #expect(DistributedBackend.gloo.isAvailable, "this build has no Gloo (libgloo-dev missing at build time)")
        let steps = 4
        let (dir, base) = try Stage1Tests().setUp(steps: steps, checkpointEvery: 2)
        defer { try? FileManager.default.removeItem(at: dir) }
        let yaml = try String(contentsOf: base, encoding: .utf8)
        try #require(yaml.contains("run_name: s1") && yaml.contains("train_bs: 4") && yaml.contains("solver:\n"))
        for (run, batch) in [("single", 4), ("ddp", 2), ("half", 2)] {
            try yaml.replacingOccurrences(of: "run_name: s1", with: "run_name: \(run)")
                .replacingOccurrences(of: "train_bs: 4", with: "train_bs: \(batch)")
                .replacingOccurrences(of: "solver:\n", with: "solver:\n  threads: 1\n  adam_epsilon: 1.0e-6\n  sync_batchnorm: true\n")
                .write(to: dir.appendingPathComponent("\(run).yaml"), atomically: true, encoding: .utf8)
        }
        for args in [["train", "single.yaml"], ["train", "half.yaml"],
                     ["train", "ddp.yaml", "--nproc", "2", "--max-steps", "2", "--dist-timeout", "60"],
                     ["train", "ddp.yaml", "--nproc", "2", "--resume", "latest", "--dist-timeout", "60"]] {
            let (status, out) = try runCLI(args, in: dir)
            try #require(status == 0, "\(args.joined(separator: " ")):\n\(out)")
            if args.contains("--nproc") && !args.contains("--resume") {
                #expect(out.contains("BatchNorm layers use the statistics of all 2 ranks"), "\(out)")
            }
        }
        let ckpt = { (run: String) in dir.appendingPathComponent("Checkpoints/\(run)/checkpoint-\(steps)") }
        // The trained modules (the frozen VAE and image encoder are saved too, unchanged).
        for f in ["denoising_unet", "reference_unet", "pose_guider", "motion_encoder"].map({ $0 + ".safetensors" }) {
            let (diff, count, key) = try maxDifference(ckpt("single").appendingPathComponent(f), ckpt("ddp").appendingPathComponent(f))
            let (control, _, _) = try maxDifference(ckpt("single").appendingPathComponent(f), ckpt("half").appendingPathComponent(f))
            print("data parallel, stage 1 \(f): max |w_1proc,bs4 - w_2proc,bs2| = \(diff) (\(key)) over \(count) tensors (1 proc at bs 2: \(control))")
            #expect(diff < 5e-5, "\(f): 2 processes at batch 2 differ from 1 at batch 4 by \(diff)")
            #expect(control > 20 * max(diff, 1e-7), "\(f): the control run (batch 2) is not distinguishable: \(control)")
        }
        let single = MetricsLog.read(dir.appendingPathComponent("Experiments/single/metrics.jsonl")).compactMap { $0["loss"] as? Double }
        let ddp = MetricsLog.read(dir.appendingPathComponent("Experiments/ddp/metrics.jsonl")).compactMap { $0["loss"] as? Double }
        #expect(single.count == steps && ddp.count == steps)
        for (a, b) in zip(single, ddp) { #expect(abs(a - b) <= 1e-5 * max(abs(a), 1e-3), "logged losses \(single) vs \(ddp)") }
        let state = try CheckpointManager.readState(ckpt("ddp"))
        #expect(state.ranks?[0].rng_generator == state.ranks?[1].rng_generator, "stage 1's ranks must share one draw stream")
    }

    /// SyncBatchNorm: two ranks (threads of this process) with half a batch each normalise, update
    /// running statistics and backpropagate exactly as one BatchNorm2d over the whole batch.
    @Test func syncBatchNormMatchesTheWholeBatch() throws {
        #expect(DistributedBackend.gloo.isAvailable, "this build has no Gloo (libgloo-dev missing at build time)")
        let g = try Generator(seed: 3)
        let x = try Tensor.randn([6, 5, 4, 3], generator: g) * 2.0 + 3.0
        let upstream = try Tensor.randn([6, 5, 4, 3], generator: g)
        @Sendable func run(_ bn: BatchNorm2d, _ input: Tensor, _ up: Tensor) throws -> [Tensor] {
            let xi = try input.clone().requiresGrad_(true)
            let y = try bn(xi)
            try (y * up).sum().backward()
            return [try y.detach(), try #require(xi.grad), try #require(bn.weight?.grad), try #require(bn.bias?.grad),
                    bn.running_mean, bn.running_var]
        }
        let whole = try run(BatchNorm2d(5), x, upstream)
        let outs = try onTwoRanks { rank, dp -> [Tensor] in
            let bn = try BatchNorm2d(5)
            guard dp.synchroniseBatchNorm([bn]) == 1 else { throw TrainingError.invalid("BatchNorm2d not converted") }
            return try run(bn, x.narrow(0, start: 3 * rank, length: 3), upstream.narrow(0, start: 3 * rank, length: 3))
        }
        let (a, b) = (outs[0], outs[1])
        // Outputs and input gradients are row blocks of the whole batch's; parameter gradients are
        // the sum of the ranks' (DDP averages them, and each rank's loss is half the batch's sum).
        let pairs: [(String, Tensor, Tensor)] = [
            ("output", try Tensor.cat([a[0], b[0]]), whole[0]), ("input gradient", try Tensor.cat([a[1], b[1]]), whole[1]),
            ("weight gradient", try a[2] + b[2], whole[2]), ("bias gradient", try a[3] + b[3], whole[3]),
            ("running mean", a[4], whole[4]), ("running var", a[5], whole[5]), ("rank 1 running var", b[5], whole[5]),
        ]
        for (what, got, want) in pairs {
            let d = try got.maxAbsDiff(want)
            #expect(d < 1e-5, "\(what) differs from one BatchNorm over the whole batch by \(d)")
        }
        // Without the group, half a batch normalises differently (the test can tell).
        let local = try run(BatchNorm2d(5), x.narrow(0, start: 0, length: 3), upstream.narrow(0, start: 0, length: 3))
        #expect(try local[0].maxAbsDiff(whole[0].narrow(0, start: 0, length: 3)) > 1e-3)
    }

    /// Two workers launched torchrun-style (environment only); rank 1 is killed with SIGKILL after a
    /// checkpoint: rank 0 stops within the timeout with an error naming rank 1, every checkpoint on
    /// disk is complete, and `--nproc 2 --resume latest` continues to the end.
    @Test func killedWorkerStopsTheOthersNamingIt() throws {
        #expect(DistributedBackend.gloo.isAvailable, "this build has no Gloo (libgloo-dev missing at build time)")
        let dir = try scratchWithDataset()
        defer { try? FileManager.default.removeItem(at: dir) }
        try ddpConfig(run: "ddp", batch: 2, steps: 1000, checkpointEvery: 2)
            .write(to: dir.appendingPathComponent("ddp.yaml"), atomically: true, encoding: .utf8)
        let bin = try #require(TrainingTestPaths.binary)
        let port = try freePort()
        let timeout = 20.0
        var workers: [(Process, Pipe)] = []
        for rank in 0..<2 {
            let p = Process()
            p.executableURL = bin
            p.arguments = ["train", "ddp.yaml", "--dist-timeout", "\(Int(timeout))"]
            p.currentDirectoryURL = dir
            var env = ProcessInfo.processInfo.environment
            for (k, v) in ["RANK": "\(rank)", "LOCAL_RANK": "\(rank)", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": "\(port)"] { env[k] = v }
            p.environment = env
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            try p.run()
            workers.append((p, pipe))
        }
        // Drain both outputs in the background so that neither worker blocks on a full pipe.
        final class Sink: @unchecked Sendable {
            let lock = NSLock()
            var data = Data()
            func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
            var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
        }
        let outputs = workers.map { (_, pipe) -> () -> String in
            let sink = Sink()
            pipe.fileHandleForReading.readabilityHandler = { sink.append($0.availableData) }
            return { sink.text }
        }
        let manager = CheckpointManager(root: dir.appendingPathComponent("Checkpoints/ddp"), keepLast: 3)
        let deadline = Date().addingTimeInterval(120)
        while (manager.list().last?.step ?? 0) < 2, workers.allSatisfy({ $0.0.isRunning }), Date() < deadline { usleep(20_000) }
        try #require(workers.allSatisfy { $0.0.isRunning }, "a worker ended early:\n\(outputs[0]())\n\(outputs[1]())")
        let killedAt = Date()
        kill(workers[1].0.processIdentifier, SIGKILL)
        workers[1].0.waitUntilExit()
        while workers[0].0.isRunning, Date().timeIntervalSince(killedAt) < timeout + 15 { usleep(20_000) }
        let stillRunning = workers[0].0.isRunning
        if stillRunning { kill(workers[0].0.processIdentifier, SIGKILL); workers[0].0.waitUntilExit() }
        let elapsed = Date().timeIntervalSince(killedAt)
        usleep(200_000)
        let out0 = outputs[0]()
        #expect(!stillRunning, "rank 0 still ran \(Int(elapsed)) s after rank 1 was killed:\n\(out0)")
        #expect(workers[0].0.terminationStatus != 0, "rank 0 exited cleanly after losing rank 1:\n\(out0)")
        #expect(out0.contains("rank 1 is gone"), "rank 0's error does not name rank 1:\n\(out0)")
        print("data parallel: rank 0 stopped \(String(format: "%.1f", elapsed)) s after rank 1 was killed")

        // Every checkpoint left is complete; the run continues from the newest with 2 processes.
        let kept = manager.list()
        try #require(!kept.isEmpty)
        for c in kept {
            let state = try CheckpointManager.readState(c.url)
            #expect(state.step == c.step && state.world_size == 2)
            _ = try SafeTensorsFile(path: c.url.appendingPathComponent("vae.safetensors").path)
            _ = try SafeTensorsFile(path: c.url.appendingPathComponent("optimizer_model.safetensors").path)
        }
        let last = kept.last!.step
        let (status, out) = try runCLI(["train", "ddp.yaml", "--nproc", "2", "--resume", "latest", "--max-steps", "\(last + 2)",
                                        "--dist-timeout", "60"], in: dir)
        #expect(status == 0, "\(out)")
        #expect(out.contains("resumed from") && manager.list().last?.step == last + 2, "\(out)")
    }

    /// Two ranks in two threads of this process train the toy GAN (generator and discriminator
    /// optimizers, like stage 2) with different noise: rank 1's deliberately different initial
    /// weights are overwritten by rank 0's, both optimizers are synchronised (the ranks end with
    /// identical weights), the result differs from one process on rank 0's data alone, and only
    /// rank 0's checkpoint holds both ranks' RNG states.
    @Test func everyOptimizerIsSynchronisedAcrossRanks() throws {
        #expect(DistributedBackend.gloo.isAvailable, "this build has no Gloo (libgloo-dev missing at build time)")
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        @Sendable func ganConfig(rank: Int, worldSize: Int, run: String) -> TrainingConfig {
            var c = config(in: dir, steps: 8, checkpointEvery: 4)
            c.run_name = run
            c.solver.use_ema = false
            c.solver.gradient_accumulation_steps = 1
            c.solver.lr_scheduler = "constant"
            c.validation.validation_steps = 0
            c.rank = rank
            c.worldSize = worldSize
            return c
        }
        @Sendable func weights(_ s: ToyGANStage) throws -> [Tensor] {
            try (s.g.namedParameters() + s.d.namedParameters()).map { try $0.1.clone() }
        }
        let logger = Logger(label: "test")
        let results = try onTwoRanks { rank, dp -> (weights: [Tensor], steps: [Int]) in
            let stage = try ToyGANStage(advStart: 0, dStart: 2)
            if rank == 1 {
                try Torch.noGrad { for (_, p) in stage.g.namedParameters() { try p.copy_(p + 0.1) } }
            }
            let trainer = try Trainer(config: ganConfig(rank: rank, worldSize: 2, run: "ddp"), stage: stage, logger: logger)
            trainer.dataParallel = dp
            try trainer.run()
            return (try weights(stage), trainer.optimizers.map(\.stepsTaken))
        }
        #expect(results[0].steps == [8, 6] && results[1].steps == [8, 6], "\(results.map(\.steps))")
        let across = try zip(results[0].weights, results[1].weights).map { try $0.maxAbsDiff($1) }.max() ?? 1
        #expect(across == 0, "ranks ended with different weights (max diff \(across))")

        let single = try ToyGANStage(advStart: 0, dStart: 2)
        try Trainer(config: ganConfig(rank: 0, worldSize: 1, run: "single"), stage: single, logger: logger).run()
        let fromOne = try zip(results[0].weights, try weights(single)).map { try $0.maxAbsDiff($1) }.max() ?? 0
        #expect(fromOne > 1e-6, "rank 1's gradients left no trace (diff to one process \(fromOne))")

        let state = try CheckpointManager.readState(dir.appendingPathComponent("Checkpoints/ddp/checkpoint-8"))
        #expect(state.world_size == 2 && state.ranks?.count == 2)
        let logged = MetricsLog.read(dir.appendingPathComponent("Experiments/ddp/metrics.jsonl")).compactMap { $0["step"] as? Int }
        #expect(logged == Array(1...8), "\(logged)")
    }

    /// A rank whose peers never come stops with an error after --dist-timeout instead of hanging:
    /// rank 1 without rank 0's store, and rank 0 without rank 1.
    @Test func rendezvousTimesOutWithAnError() throws {
        let dir = try scratchWithDataset()
        defer { try? FileManager.default.removeItem(at: dir) }
        try ddpConfig(run: "alone", batch: 2, steps: 4, checkpointEvery: 0)
            .write(to: dir.appendingPathComponent("alone.yaml"), atomically: true, encoding: .utf8)
        let bin = try #require(TrainingTestPaths.binary)
        for (rank, expected) in [(1, "could not reach rank 0's rendezvous store"), (0, "did not form within 3 s")] {
            let p = Process()
            p.executableURL = bin
            p.arguments = ["train", "alone.yaml", "--dist-timeout", "3"]
            p.currentDirectoryURL = dir
            var env = ProcessInfo.processInfo.environment
            for (k, v) in ["RANK": "\(rank)", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "\(try freePort())"] {
                env[k] = v
            }
            p.environment = env
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            let t0 = Date()
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let text = String(decoding: data, as: UTF8.self)
            let elapsed = Date().timeIntervalSince(t0)
            #expect(p.terminationStatus != 0, "rank \(rank) alone exited cleanly:\n\(text)")
            #expect(text.contains(expected), "rank \(rank) alone:\n\(text)")
            #expect(elapsed < 30, "rank \(rank) alone took \(elapsed) s to give up")
        }
    }
}
