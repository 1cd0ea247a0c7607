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
public protocol TrainingStage: AnyObject {
    /// Modules saved in each checkpoint, keyed by file name (`denoising_unet` → denoising_unet.safetensors).
    var savedModules: [(String, Module)] { get }
    /// Parameters the optimizer updates, with full names (`<module>.<key>`).
    var trainableParameters: [(String, Tensor)] { get }
    /// Samples consumed per micro-batch (for samples/s and the data cursor).
    var batchSize: Int { get }
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
}

extension TrainingStage {
    public var dataWaitSeconds: Double { 0 }
    public var precision: Precision { Precision() }
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
    let optimizer: AdamW
    let schedule: LRSchedule
    let ema: EMAModel?
    let params: [(String, Tensor)]
    /// Loss scaling for float16 mixed precision (nil otherwise).
    let scaler: GradScaler?

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
        params = stage.trainableParameters.filter { $0.1.requiresGrad }
        guard !params.isEmpty else { throw TrainingError.invalid("stage '\(config.stage)' has no trainable parameters") }
        let s = config.solver
        var lr = s.learning_rate
        if s.scale_lr { lr *= Double(s.gradient_accumulation_steps * config.data.train_bs) }
        // Every trainable parameter decays, biases and norm weights included: the reference scripts
        // give AdamW one group with the configured decay.
        optimizer = try AdamW(groups: [ParamGroup(params: params.map(\.1), lr: lr, weightDecay: s.adam_weight_decay)],
                              betas: (s.adam_beta1, s.adam_beta2), eps: s.adam_epsilon)
        schedule = try LRSchedule(kind: s.lr_scheduler, baseLR: lr, warmupSteps: s.lr_warmup_steps,
                                  totalSteps: s.max_train_steps, numCycles: s.lr_num_cycles)
        ema = s.use_ema ? try EMAModel(parameters: params, decay: s.ema_decay, minDecay: s.ema_min_decay,
                                       updateAfterStep: s.ema_update_after_step) : nil
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
        if let scaler {
            state.grad_scale = scaler.scale
            state.grad_scale_growth_tracker = scaler.growthTracker
        }
        let contents = CheckpointContents(
            modules: stage.savedModules.map { ($0.0, $0.1.stateDict()) },
            optimizer: try optimizer.exportState() + [("__step__", try Tensor([Int64(step)], shape: []))],
            ema: try ema?.stateDict(),
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
        try optimizer.importState(SafeTensorsFile(path: url.appendingPathComponent("optimizer.safetensors").path).loadAll())
        if let ema {
            try ema.load(SafeTensorsFile(path: url.appendingPathComponent("ema.safetensors").path).loadAll())
        }
        try generator.setState(try decodeState(state.rng_generator, url))
        try Generator.setDefaultState(try decodeState(state.rng_global, url))
        if let scaler, let scale = state.grad_scale {
            scaler.restore(scale: scale, growthTracker: state.grad_scale_growth_tracker ?? 0)
        }
        return state.step
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
        try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
        try config.yaml().write(to: runDirectory.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
        let metrics = try MetricsLog(url: runDirectory.appendingPathComponent("metrics.jsonl"))

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
        // Lines past the restored step were written by a run that died before its next checkpoint.
        try metrics.truncate(after: resumedFrom == nil ? -1 : step)
        onEvent(.started(startStep: step, totalSteps: total, resumedFrom: resumedFrom))
        // A fresh run validates once before training, so its report has a step-0 baseline.
        if resumedFrom == nil, step == 0, config.validation.validation_steps > 0, total > 0 {
            try validate(step: 0, metrics: metrics)
        }

        let accum = max(1, config.solver.gradient_accumulation_steps)
        let clip = config.solver.max_grad_norm
        let precision = stage.precision
        while step < total {
            if interrupt.isSet {
                _ = try save(step: step)
                onEvent(.interrupted(step: step))
                return step
            }
            let t0 = Date()
            try optimizer.setLearningRate(schedule.learningRate(at: step))
            var sums: [String: Double] = [:]
            var tForward = 0.0, tBackward = 0.0
            let wait0 = stage.dataWaitSeconds
            for micro in 0..<accum {
                let tf = Date()
                // Layer randomness (dropout) comes from the run's generator too, so a resumed run
                // repeats it exactly whatever else uses the global generator meanwhile.
                let terms = try RandomContext.with(generator) {
                    try precision.autocast {
                        try stage.losses(sample: (step * accum + micro) * stage.batchSize, generator: generator)
                    }
                }
                tForward += Date().timeIntervalSince(tf)
                guard let loss = terms["loss"] else { throw TrainingError.invalid("stage returned no 'loss' term") }
                for (k, v) in terms.sorted(by: { $0.key < $1.key }) {
                    let x = try v.detach().item()
                    guard x.isFinite else { throw TrainingError.nonFinite(step: step + 1, term: k, value: x) }
                    sums[k, default: 0] += x / Double(accum)
                }
                let tb = Date()
                let part = accum == 1 ? loss : try loss / Double(accum)
                try (scaler.map { try $0.scaled(part) } ?? part).backward()
                tBackward += Date().timeIntervalSince(tb)
            }
            let to = Date()
            // float16: gradients back to their true size; a step with Inf/NaN gradients is skipped
            // and the loss scale shrinks (the loss itself was finite, checked above).
            let finite = try scaler?.unscale(params.map(\.1)) ?? true
            var gradNorm = Double.nan
            if finite {
                gradNorm = try Autograd.clipGradNorm(params.map(\.1), maxNorm: clip > 0 ? clip : .infinity)
                try optimizer.step()
                try ema?.step(params)
            } else {
                logger.warning("step \(step + 1): gradients overflowed at loss scale \(scaler!.scale); step skipped")
            }
            scaler?.update(foundInf: !finite)
            try optimizer.zeroGrad()
            let tOpt = Date().timeIntervalSince(to)
            let tData = stage.dataWaitSeconds - wait0
            step += 1
            let dt = Date().timeIntervalSince(t0)
            let lr = schedule.learningRate(at: step - 1)
            var record: [String: Any] = ["step": step, "lr": lr, "step_time": dt,
                                         "samples_per_s": Double(samplesPerStep) / max(dt, 1e-9)]
            if finite { record["grad_norm"] = gradNorm } else { record["skipped_overflow"] = true }
            if let scaler { record["loss_scale"] = scaler.scale }
            for (k, v) in sums { record[k] = v }
            try metrics.append(record)
            onEvent(.step(StepReport(step: step, totalSteps: total, losses: sums, lr: lr, gradNorm: gradNorm,
                                     stepTime: dt, samplesPerSecond: Double(samplesPerStep) / max(dt, 1e-9),
                                     timing: ["data": tData, "forward": tForward - tData, "backward": tBackward,
                                              "optimizer": tOpt])))

            let v = config.validation.validation_steps
            if v > 0, step % v == 0 || step == total { try validate(step: step, metrics: metrics) }
            let c = config.checkpointing.checkpointing_steps
            if (c > 0 && step % c == 0) || step == total { _ = try save(step: step) }
        }
        onEvent(.finished(step: step))
        return step
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
