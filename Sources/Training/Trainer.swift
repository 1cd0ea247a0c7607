// Trainer.swift — the one training loop every stage shares (the role of accelerate + the
// reference train_stage*.py loops): gradient accumulation, clipping, AdamW, LR schedule, EMA,
// checkpoints with exact resume, metrics, validation, NaN/Inf stop and clean interruption.
import Foundation
import Logging
import NN
import Torch

public enum TrainingError: Error, CustomStringConvertible {
    case nonFinite(step: Int, term: String, value: Double)
    case io(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .nonFinite(let step, let term, let value):
            return "step \(step): loss term '\(term)' is \(value); stopping (the last good checkpoint is kept)"
        case .io(let m), .invalid(let m): return m
        }
    }
}

/// A training stage: what to build, what to train, how to compute the loss and validate.
///
/// A stage whose iteration is one loss implements `losses`; the trainer backpropagates its `loss`
/// term into the one optimizer `optimizerSpecs` declares by default (named "model", over
/// `trainableParameters`, with the solver section's settings). A stage with several optimizers
/// (a generator and a discriminator) declares them and implements `iterate`, driving the
/// iteration through the step context.
public protocol TrainingStage: AnyObject {
    /// Modules saved in each checkpoint, keyed by file name (`denoising_unet` → denoising_unet.safetensors).
    var savedModules: [(String, Module)] { get }
    /// Parameters the optimizer updates, with full names (`<module>.<key>`).
    var trainableParameters: [(String, Tensor)] { get }
    /// Samples consumed per micro-batch (for samples/s and the data cursor).
    var batchSize: Int { get }
    /// The named optimizers, built after `freeze:` has been applied.
    func optimizerSpecs(config: TrainingConfig) throws -> [OptimizerSpec]
    /// One micro-batch of the iteration: records loss terms, calls `backward` and `step`.
    func iterate(_ context: StepContext, sample: Int, generator: Generator) throws
    /// Loss terms for one micro-batch; `loss` is the one backpropagated. `sample` is the index of
    /// the batch's first sample in the deterministic data stream.
    func losses(sample: Int, generator: Generator) throws -> [String: Tensor]
    /// Runs validation and writes its files under `directory`; returns scalar metrics.
    func validate(step: Int, directory: URL, logger: Logger) throws -> [String: Double]
    /// Seconds spent so far waiting for batches (a prefetcher that keeps up keeps this near 0).
    var dataWaitSeconds: Double { get }
    /// The device and precision the stage placed its modules in (losses and validation run under
    /// its autocast).
    var precision: Precision { get }
    /// Values written into every checkpoint's trainer_state.json (`pipeline`) for inference, e.g.
    /// an estimated latent scale.
    var pipelineMetadata: [String: Double] { get }
    /// Whether the stage draws its batch-shaped randomness through BatchShard (every rank at the
    /// global batch, keeping its rows): then all ranks keep one generator stream. Otherwise each
    /// rank > 0 is reseeded so that ranks draw different noise.
    var drawsShardedAcrossRanks: Bool { get }
}

extension TrainingStage {
    public var dataWaitSeconds: Double { 0 }
    public var precision: Precision { Precision() }
    public var pipelineMetadata: [String: Double] { [:] }
    public var drawsShardedAcrossRanks: Bool { false }

    public func optimizerSpecs(config: TrainingConfig) throws -> [OptimizerSpec] {
        [OptimizerSpec(name: "model", parameters: trainableParameters.filter { $0.1.requiresGrad },
                       solver: config.solver, trainBatch: config.data.train_bs)]
    }

    /// The one-loss form: `losses`, then backward and step of the first optimizer.
    public func iterate(_ context: StepContext, sample: Int, generator: Generator) throws {
        let terms = try losses(sample: sample, generator: generator)
        guard let loss = terms["loss"] else { throw TrainingError.invalid("stage returned no 'loss' term") }
        try context.record(terms)
        let name = context.optimizers[0].name
        try context.backward(loss, for: name)
        try context.step(name)
    }

    public func losses(sample: Int, generator: Generator) throws -> [String: Tensor] {
        throw TrainingError.invalid("this stage drives its own iteration (iterate); it has no single loss")
    }
}

/// What the trainer reports while it runs (the CLI renders it as a progress bar or lines).
public enum TrainingEvent {
    case started(startStep: Int, totalSteps: Int, resumedFrom: URL?)
    case step(StepReport)
    case validation(step: Int, metrics: [String: Double], directory: URL)
    case checkpoint(step: Int, url: URL)
    case interrupted(step: Int)
    case finished(step: Int)
}

public struct StepReport: Sendable {
    public let step: Int
    public let totalSteps: Int
    public let losses: [String: Double]
    public let lr: Double
    public let gradNorm: Double
    public let stepTime: Double
    public let samplesPerSecond: Double
    public let timing: [String: Double]
}

/// Set by SIGINT/SIGTERM; the loop checks it between steps and checkpoints before leaving.
public final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    private var sources: [DispatchSourceSignal] = []
    public init() {}
    public var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    public func set() { lock.lock(); value = true; lock.unlock() }

    /// Routes SIGINT and SIGTERM to this flag instead of killing the process.
    public func installSignalHandlers() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { [weak self] in self?.set() }
            src.resume()
            sources.append(src)
        }
    }
}

public final class Trainer {
    public let config: TrainingConfig
    public let stage: TrainingStage
    public let logger: Logger
    public let runDirectory: URL
    public let checkpoints: CheckpointManager
    public var onEvent: (TrainingEvent) -> Void = { _ in }
    public let interrupt: InterruptFlag

    let generator: Generator
    /// The stage's optimizers, in declaration order.
    public let optimizers: [NamedOptimizer]
    /// Loss scaling for float16 mixed precision (nil otherwise), shared by every optimizer.
    let scaler: GradScaler?
    /// Called for each optimizer after its gradients are unscaled, before clipping: where data
    /// parallelism averages gradients across ranks.
    public var gradientSync: ((NamedOptimizer) throws -> Void)?
    /// Data parallelism (DataParallel.swift): when set, rank 0's weights are broadcast at the start,
    /// every optimizer's gradients are averaged over the ranks at the sync point (unless
    /// `gradientSync` is set), each rank keeps its own RNG and data shard (config.rank/worldSize),
    /// and only rank 0 writes checkpoints, metrics, validation and events.
    public var dataParallel: DataParallel?
    var isMain: Bool { dataParallel?.isMain ?? true }
    var worldSize: Int { dataParallel?.worldSize ?? 1 }

    public init(config: TrainingConfig, stage: TrainingStage, logger: Logger, interrupt: InterruptFlag = InterruptFlag()) throws {
        self.config = config
        self.stage = stage
        self.logger = logger
        self.interrupt = interrupt
        runDirectory = URL(fileURLWithPath: config.output_dir).appendingPathComponent(config.run_name)
        checkpoints = CheckpointManager(
            root: URL(fileURLWithPath: config.checkpointing.output_dir).appendingPathComponent(config.run_name),
            keepLast: config.checkpointing.keep_last)
        generator = try Generator(seed: config.seed)
        let saved = Dictionary(stage.savedModules, uniquingKeysWith: { a, _ in a })
        for (name, patterns) in config.freeze.sorted(by: { $0.key < $1.key }) {
            guard let module = saved[name] else {
                throw TrainingError.invalid("freeze.\(name): no such module in stage '\(config.stage)' (has "
                                            + saved.keys.sorted().joined(separator: ", ") + ")")
            }
            let frozen = try module.freeze(patterns)
            if frozen.isEmpty { logger.warning("freeze.\(name): \(patterns) matched no parameter") }
            else { logger.info("freeze.\(name): \(frozen.count) parameters frozen") }
        }
        let specs = try stage.optimizerSpecs(config: config)
        guard !specs.isEmpty, specs.contains(where: { $0.parameters.contains { $0.1.requiresGrad } }) else {
            throw TrainingError.invalid("stage '\(config.stage)' has no trainable parameters")
        }
        var seen: [ObjectIdentifier: String] = [:]
        for spec in specs {
            guard !spec.name.isEmpty, spec.name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw TrainingError.invalid("optimizer name '\(spec.name)' must be letters, digits and _")
            }
            for (n, p) in spec.parameters where p.requiresGrad {
                if let other = seen[ObjectIdentifier(p)] {
                    throw TrainingError.invalid("parameter \(n) is in optimizers '\(other)' and '\(spec.name)'")
                }
                seen[ObjectIdentifier(p)] = spec.name
            }
        }
        guard Set(specs.map(\.name)).count == specs.count else {
            throw TrainingError.invalid("stage '\(config.stage)' declares an optimizer name twice: \(specs.map(\.name))")
        }
        optimizers = try specs.map { try NamedOptimizer($0, solver: config.solver) }
        scaler = stage.precision.needsGradScaler ? GradScaler() : nil
        let p = stage.precision
        let mode = p.isMixed ? "mixed precision \(p.weightDtype) (frozen modules in \(p.weightDtype))" : "fp32"
        logger.info("device \(p.device), \(mode)\(scaler != nil ? ", dynamic loss scaling" : "")")
    }

    // MARK: checkpoints

    func save(step: Int) throws -> URL {
        var state = TrainerState(stage: config.stage, step: step, data_cursor: step * samplesPerStep,
                                 config_digest: try config.digest(),
                                 rng_generator: try Data(generator.state().contiguousBytes()).base64EncodedString(),
                                 rng_global: try Data(Generator.defaultState().contiguousBytes()).base64EncodedString(),
                                 modules: stage.savedModules.map(\.0))
        let pipeline = stage.pipelineMetadata
        if !pipeline.isEmpty { state.pipeline = pipeline }
        if let scaler {
            state.grad_scale = scaler.scale
            state.grad_scale_growth_tracker = scaler.growthTracker
        }
        if let dp = dataParallel {
            // Every rank's RNG states and cursor go into rank 0's trainer_state.json.
            let mine = RankState(rank: dp.rank, data_cursor: state.data_cursor, rng_generator: state.rng_generator,
                                 rng_global: state.rng_global)
            guard let all = try dp.gatherToMain("checkpoint-\(step)", Array(try JSONEncoder().encode(mine))) else {
                return checkpoints.folder(step: step)
            }
            state.world_size = dp.worldSize
            state.ranks = try all.map { (bytes: [UInt8]) -> RankState in
                try JSONDecoder().decode(RankState.self, from: Foundation.Data(bytes))
            }
        }
        let contents = CheckpointContents(
            modules: stage.savedModules.map { ($0.0, $0.1.stateDict()) },
            optimizers: try optimizers.map { ($0.name, try $0.exportState()) },
            emas: try optimizers.compactMap { o in try o.ema.map { (o.name, try $0.stateDict()) } },
            state: state,
            configYAML: try config.yaml())
        let url = try checkpoints.save(contents)
        onEvent(.checkpoint(step: step, url: url))
        return url
    }

    /// Restores everything a checkpoint holds; returns its step.
    func restore(from url: URL) throws -> Int {
        let state = try CheckpointManager.readState(url)
        guard state.stage == config.stage else {
            throw TrainingError.invalid("\(url.path) is a '\(state.stage)' checkpoint, this config trains '\(config.stage)'")
        }
        if state.config_digest != (try config.digest()) {
            logger.warning("resuming with a config that differs from the checkpoint's (\(url.path)/config.yaml)")
        }
        for (name, module) in stage.savedModules {
            try module.load(from: SafeTensorsSource(path: url.appendingPathComponent("\(name).safetensors").path))
        }
        try restoreOptimizers(from: url)
        let written = state.world_size ?? 1
        guard written == worldSize else {
            throw TrainingError.invalid("\(url.path) was written by a run of \(written) process\(written == 1 ? "" : "es"); "
                + "this run has \(worldSize). Resume it with the same world size (--nproc \(written), or WORLD_SIZE=\(written) "
                + "under torchrun): each rank's data cursor and RNG state belong to that sharding")
        }
        var rng = (state.rng_generator, state.rng_global)
        if let dp = dataParallel {
            guard let mine = state.ranks?.first(where: { $0.rank == dp.rank }) else {
                throw TrainingError.io("\(url.path)/trainer_state.json has no state for rank \(dp.rank)")
            }
            rng = (mine.rng_generator, mine.rng_global)
        }
        try generator.setState(try decodeState(rng.0, url))
        try Generator.setDefaultState(try decodeState(rng.1, url))
        if let scaler, let scale = state.grad_scale {
            scaler.restore(scale: scale, growthTracker: state.grad_scale_growth_tracker ?? 0)
        }
        return state.step
    }

    /// `optimizer_<name>.safetensors` (state keyed by parameter name) per optimizer, or, for a
    /// checkpoint written before optimizers were named, `optimizer.safetensors` (by position) for a
    /// stage with one optimizer; EMA likewise from `ema_<name>.safetensors` or `ema.safetensors`.
    func restoreOptimizers(from url: URL) throws {
        let fm = FileManager.default
        let legacy = url.appendingPathComponent(CheckpointManager.legacyOptimizerFile)
        for o in optimizers {
            let file = url.appendingPathComponent(CheckpointManager.optimizerFile(o.name))
            if fm.fileExists(atPath: file.path) {
                try o.importState(SafeTensorsFile(path: file.path).loadAll(), file: file.path)
            } else if optimizers.count == 1, fm.fileExists(atPath: legacy.path) {
                logger.info("\(url.lastPathComponent): optimizer state in the earlier format (optimizer.safetensors, by position)")
                try o.importPositionalState(SafeTensorsFile(path: legacy.path).loadAll())
            } else {
                throw TrainingError.io("\(url.path) has no \(file.lastPathComponent) (optimizer '\(o.name)')")
            }
            if let ema = o.ema {
                let named = url.appendingPathComponent(CheckpointManager.emaFile(o.name))
                let old = url.appendingPathComponent("ema.safetensors")
                let path = fm.fileExists(atPath: named.path) ? named.path : optimizers.count == 1 ? old.path : named.path
                guard fm.fileExists(atPath: path) else {
                    throw TrainingError.io("\(url.path) has no \(named.lastPathComponent) (EMA of optimizer '\(o.name)')")
                }
                try ema.load(SafeTensorsFile(path: path).loadAll())
            }
        }
    }

    func decodeState(_ b64: String, _ url: URL) throws -> Tensor {
        guard let d = Data(base64Encoded: b64) else { throw TrainingError.io("\(url.path): corrupt RNG state") }
        return try [UInt8](d).withUnsafeBytes { try Tensor.fromBytes($0, shape: [d.count], dtype: .uint8) }
    }

    var samplesPerStep: Int { stage.batchSize * config.solver.gradient_accumulation_steps }

    // MARK: the loop

    /// Trains until `maxSteps` (default: solver.max_train_steps). `resume` is nil, "latest" or a
    /// checkpoint folder. Returns the step reached.
    @discardableResult
    public func run(maxSteps: Int? = nil, resume: String? = nil) throws -> Int {
        let total = maxSteps ?? config.solver.max_train_steps
        if let dp = dataParallel, config.worldSize != dp.worldSize || config.rank != dp.rank {
            throw TrainingError.invalid("config shard rank \(config.rank) of \(config.worldSize) differs from the process "
                                        + "group's rank \(dp.rank) of \(dp.worldSize) (set config.rank/worldSize before building the stage)")
        }
        let metrics: MetricsLog? = isMain ? try {
            try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
            try config.yaml().write(to: runDirectory.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
            return try MetricsLog(url: runDirectory.appendingPathComponent("metrics.jsonl"))
        }() : nil
        let emit: (TrainingEvent) -> Void = isMain ? onEvent : { _ in }
        let sync = gradientSync ?? dataParallel.map { dp in { (o: NamedOptimizer) in try dp.averageGradients(o.params.map(\.1), name: o.name) } }
        do {
            return try loop(total: total, resume: resume, metrics: metrics, emit: emit, sync: sync)
        } catch {
            dataParallel?.reportFailure("\(error)")
            throw error
        }
    }

    func loop(total: Int, resume: String?, metrics: MetricsLog?, emit: (TrainingEvent) -> Void,
              sync: ((NamedOptimizer) throws -> Void)?) throws -> Int {

        var step = 0
        var resumedFrom: URL?
        if let resume {
            let url: URL?
            if resume == "latest" {
                url = checkpoints.latest()
                if url == nil { logger.info("no checkpoint under \(checkpoints.root.path); starting from step 0") }
            } else {
                url = URL(fileURLWithPath: resume)
            }
            if let url {
                step = try restore(from: url)
                resumedFrom = url
                logger.info("resumed from \(url.path) at step \(step)")
            }
        }
        if let dp = dataParallel {
            // A fresh run: each rank > 0 draws its own noise (rank 0 keeps the single-process stream),
            // unless the stage shards its draws of one shared stream.
            if resumedFrom == nil, dp.rank > 0, !stage.drawsShardedAcrossRanks {
                try generator.manualSeed(config.seed &+ UInt64(dp.rank) &* 0x9E37_79B9_7F4A_7C15)
            }
            try dp.broadcastModules(stage.savedModules.map(\.1))
            if config.solver.sync_batchnorm {
                let n = dp.synchroniseBatchNorm(stage.savedModules.map(\.1))
                logger.info("solver.sync_batchnorm: \(n) BatchNorm layers use the statistics of all \(dp.worldSize) ranks")
            }
        }
        // Lines past the restored step were written by a run that died before its next checkpoint.
        try metrics?.truncate(after: resumedFrom == nil ? -1 : step)
        emit(.started(startStep: step, totalSteps: total, resumedFrom: resumedFrom))
        // A fresh run validates once before training, so its report has a step-0 baseline.
        if let metrics, resumedFrom == nil, step == 0, config.validation.validation_steps > 0, total > 0 {
            try validate(step: 0, metrics: metrics)
        }

        let accum = max(1, config.solver.gradient_accumulation_steps)
        let precision = stage.precision
        while step < total {
            if try stopRequested() {
                _ = try save(step: step)
                emit(.interrupted(step: step))
                return step
            }
            let t0 = Date()
            for o in optimizers {
                o.lastLR = o.schedule.learningRate(at: step)
                try o.adamw.setLearningRate(o.lastLR)
                o.lastGradNorm = nil
            }
            let context = StepContext(optimizers: optimizers, scaler: scaler, accumulation: accum, step: step,
                                      gradientSync: sync)
            var tForward = 0.0
            let wait0 = stage.dataWaitSeconds
            let layerShard = stage.drawsShardedAcrossRanks ? BatchShard(rank: config.rank, count: config.worldSize) : .whole
            for micro in 0..<accum {
                context.microBatch = micro
                let tf = Date()
                // Layer randomness (dropout) comes from the run's generator too, so a resumed run
                // repeats it exactly whatever else uses the global generator meanwhile.
                try RandomContext.with(generator, shard: layerShard) {
                    try precision.autocast {
                        try stage.iterate(context, sample: (step * accum + micro) * stage.batchSize, generator: generator)
                    }
                }
                tForward += Date().timeIntervalSince(tf)
            }
            // float16: a step whose gradients overflowed was skipped and the loss scale shrinks.
            for name in context.overflowed.sorted() {
                logger.warning("step \(step + 1): '\(name)' gradients overflowed at loss scale \(scaler!.scale); its step was skipped")
            }
            scaler?.update(foundInf: !context.overflowed.isEmpty)
            let tData = stage.dataWaitSeconds - wait0
            step += 1
            let dt = Date().timeIntervalSince(t0)
            // Under data parallelism the logged loss terms are the mean over ranks (the global batch's).
            let sums = try dataParallel?.averageScalars(context.terms) ?? context.terms
            let samplesPerStep = self.samplesPerStep * worldSize
            let first = optimizers[0]
            let lr = first.lastLR
            let gradNorm = first.lastGradNorm ?? .nan
            var record: [String: Any] = ["step": step, "lr": lr, "step_time": dt,
                                         "samples_per_s": Double(samplesPerStep) / max(dt, 1e-9)]
            if let g = first.lastGradNorm { record["grad_norm"] = g }
            if !context.overflowed.isEmpty { record["skipped_overflow"] = true }
            if optimizers.count > 1 {
                for o in optimizers {
                    record["lr_\(o.name)"] = o.lastLR
                    if let g = o.lastGradNorm { record["grad_norm_\(o.name)"] = g }
                }
            }
            if let scaler { record["loss_scale"] = scaler.scale }
            for (k, v) in sums { record[k] = v }
            try metrics?.append(record)
            let tBackward = context.backwardSeconds, tOpt = context.optimizerSeconds
            emit(.step(StepReport(step: step, totalSteps: total, losses: sums, lr: lr, gradNorm: gradNorm,
                                     stepTime: dt, samplesPerSecond: Double(samplesPerStep) / max(dt, 1e-9),
                                     timing: ["data": tData, "forward": tForward - tData - tBackward - tOpt,
                                              "backward": tBackward, "optimizer": tOpt])))

            let v = config.validation.validation_steps
            if let metrics, v > 0, step % v == 0 || step == total { try validate(step: step, metrics: metrics) }
            let c = config.checkpointing.checkpointing_steps
            if (c > 0 && step % c == 0) || step == total { _ = try save(step: step) }
        }
        emit(.finished(step: step))
        return step
    }

    /// Whether to checkpoint and stop now: this process was interrupted or, under data
    /// parallelism, any rank was (all ranks agree, so they stop at the same step).
    func stopRequested() throws -> Bool {
        guard let dp = dataParallel else { return interrupt.isSet }
        let flag = try Tensor.full([1], interrupt.isSet ? 1 : 0)
        try dp.collective("agreeing on an interrupt") { try dp.group.allReduceMean([flag]) }
        return try flag.item() > 0
    }

    public func validate(step: Int, metrics: MetricsLog) throws {
        let dir = runDirectory.appendingPathComponent("validation/step-\(step)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let wasTraining = stage.savedModules.map { $0.1.training }
        for (_, m) in stage.savedModules { m.eval() }
        let values = try Torch.noGrad {
            try stage.precision.autocast { try stage.validate(step: step, directory: dir, logger: logger) }
        }
        for ((_, m), t) in zip(stage.savedModules, wasTraining) { m.train(t) }
        var record: [String: Any] = ["step": step, "validation": true]
        for (k, v) in values { record["val_\(k)"] = v }
        try metrics.append(record)
        try LossCurve.write(metrics: metrics.url, to: runDirectory.appendingPathComponent("loss_curve.png"))
        onEvent(.validation(step: step, metrics: values, directory: dir))
    }
}
