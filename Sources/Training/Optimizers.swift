// Optimizers.swift — the named optimizers a stage declares and the step context it drives its
// iteration through, in the shape of PyTorch Lightning's manual optimization (`manual_backward`,
// `toggle_optimizer`, `opt.step()`) and of taming-transformers' VQGAN (generator and discriminator
// optimizers in one iteration). The context does what accelerate does around `backward` and
// `optimizer.step()`: loss scaling, gradient accumulation, unscale → gradient sync → clip → step → EMA.
import Foundation
import NN
import Torch

/// Per-optimizer settings in a stage's config section (`optimizers: {discriminator: {...}}`);
/// every key left out takes the `solver` section's value.
public struct OptimizerSection: Codable, Sendable, Equatable {
    public var learning_rate: Double?
    public var adam_beta1: Double?
    public var adam_beta2: Double?
    public var adam_weight_decay: Double?
    public var adam_epsilon: Double?
    public var max_grad_norm: Double?
    public var lr_scheduler: String?
    public var lr_warmup_steps: Int?
    public var use_ema: Bool?
    /// Globs over `<module>.<parameter key>` (e.g. `discriminator.*`); empty = the stage's default set.
    public var params: [String]?

    enum K: String, CodingKey, CaseIterable {
        case learning_rate, adam_beta1, adam_beta2, adam_weight_decay, adam_epsilon, max_grad_norm, lr_scheduler,
             lr_warmup_steps, use_ema, params
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: K.self)
        learning_rate = try c.value(.learning_rate, default: nil)
        adam_beta1 = try c.value(.adam_beta1, default: nil)
        adam_beta2 = try c.value(.adam_beta2, default: nil)
        adam_weight_decay = try c.value(.adam_weight_decay, default: nil)
        adam_epsilon = try c.value(.adam_epsilon, default: nil)
        max_grad_norm = try c.value(.max_grad_norm, default: nil)
        lr_scheduler = try c.value(.lr_scheduler, default: nil)
        if let s = lr_scheduler, LRSchedule.Kind(rawValue: s) == nil {
            throw DecodingError.dataCorruptedError(
                forKey: .lr_scheduler, in: c,
                debugDescription: "unknown schedule '\(s)'; known: " + LRSchedule.Kind.allCases.map(\.rawValue).joined(separator: ", "))
        }
        lr_warmup_steps = try c.value(.lr_warmup_steps, default: nil)
        use_ema = try c.value(.use_ema, default: nil)
        params = try c.value(.params, default: nil)
    }
}

/// One optimizer a stage declares: its parameters (full names `<module>.<key>`) and its settings.
public struct OptimizerSpec {
    public var name: String
    public var parameters: [(String, Tensor)]
    public var learningRate: Double
    public var betas: (Double, Double)
    public var weightDecay: Double
    public var eps: Double
    /// The fused AdamW kernel where the LibTorch has it (solver.adam_fused).
    public var fused: Bool
    /// ≤ 0: no clipping (the norm is still measured and logged).
    public var maxGradNorm: Double
    public var lrScheduler: String
    public var lrWarmupSteps: Int
    public var useEMA: Bool

    /// The solver section's settings for `parameters` (what a one-optimizer stage gets).
    public init(name: String, parameters: [(String, Tensor)], solver s: SolverSection, trainBatch: Int) {
        self.name = name
        self.parameters = parameters
        var lr = s.learning_rate
        if s.scale_lr { lr *= Double(s.gradient_accumulation_steps * trainBatch) }
        learningRate = lr
        betas = (s.adam_beta1, s.adam_beta2)
        weightDecay = s.adam_weight_decay
        eps = s.adam_epsilon
        fused = s.adam_fused
        maxGradNorm = s.max_grad_norm
        lrScheduler = s.lr_scheduler
        lrWarmupSteps = s.lr_warmup_steps
        useEMA = s.use_ema
    }

    /// These settings overridden by a config section's entries; `key` names it in errors.
    public func overridden(by o: OptimizerSection?, from candidates: [(String, Tensor)], key: String) throws -> OptimizerSpec {
        guard let o else { return self }
        var s = self
        if let v = o.learning_rate { s.learningRate = v }
        if let v = o.adam_beta1 { s.betas.0 = v }
        if let v = o.adam_beta2 { s.betas.1 = v }
        if let v = o.adam_weight_decay { s.weightDecay = v }
        if let v = o.adam_epsilon { s.eps = v }
        if let v = o.max_grad_norm { s.maxGradNorm = v }
        if let v = o.lr_scheduler { s.lrScheduler = v }
        if let v = o.lr_warmup_steps { s.lrWarmupSteps = v }
        if let v = o.use_ema { s.useEMA = v }
        if let globs = o.params, !globs.isEmpty {
            s.parameters = candidates.filter { Glob.matchesAny($0.0, globs) }
            if s.parameters.isEmpty {
                throw TrainingError.invalid("\(key).params: \(globs) match no trainable parameter")
            }
        }
        return s
    }
}

/// A declared optimizer at run time: AdamW, its schedule, its EMA and its last measurements.
public final class NamedOptimizer {
    public let spec: OptimizerSpec
    public var name: String { spec.name }
    public let adamw: AdamW
    public let schedule: LRSchedule
    public let ema: EMAModel?
    /// Parameters that still require grad (frozen ones are left out at construction).
    public let params: [(String, Tensor)]
    /// Measured at this iteration's step (nil when it did not step).
    public internal(set) var lastGradNorm: Double?
    public internal(set) var lastLR: Double = 0
    /// Steps this optimizer took (not skipped by the stage or an overflow).
    public internal(set) var stepsTaken = 0

    init(_ spec: OptimizerSpec, solver: SolverSection) throws {
        self.spec = spec
        params = spec.parameters.filter { $0.1.requiresGrad }
        guard !params.isEmpty else { throw TrainingError.invalid("optimizer '\(spec.name)' has no trainable parameters") }
        // Every trainable parameter decays, biases and norm weights included: the reference scripts
        // give AdamW one group with the configured decay.
        adamw = try AdamW(groups: [ParamGroup(params: params.map(\.1), lr: spec.learningRate, weightDecay: spec.weightDecay)],
                          betas: spec.betas, eps: spec.eps, fused: spec.fused)
        schedule = try LRSchedule(kind: spec.lrScheduler, baseLR: spec.learningRate, warmupSteps: spec.lrWarmupSteps,
                                  totalSteps: solver.max_train_steps, numCycles: solver.lr_num_cycles)
        ema = spec.useEMA ? try EMAModel(parameters: params, decay: solver.ema_decay, minDecay: solver.ema_min_decay,
                                         updateAfterStep: solver.ema_update_after_step) : nil
    }

    /// The AdamW state keyed by parameter name (`<name>.exp_avg`, `.exp_avg_sq`, `.step`), so a
    /// checkpoint survives a change in parameter order or in the set of optimizers.
    public func exportState() throws -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (i, (name, _)) in params.enumerated() {
            guard let s = try adamw.state(of: i) else { continue }
            out.append(("\(name).exp_avg", s.expAvg))
            out.append(("\(name).exp_avg_sq", s.expAvgSq))
            out.append(("\(name).step", try Tensor([Int64(s.step)], shape: [])))
            if let m = s.maxExpAvgSq { out.append(("\(name).max_exp_avg_sq", m)) }
        }
        return out + [("__steps_taken__", try Tensor([Int64(stepsTaken)], shape: []))]
    }

    /// Restores `exportState`'s entries; a parameter without state is one that never stepped.
    /// Entries naming no parameter of this optimizer are errors (a renamed or moved parameter).
    public func importState(_ entries: [String: Tensor], file: String) throws {
        let known = Set(params.map(\.0))
        for key in entries.keys where !key.hasPrefix("__") {
            let base = ["exp_avg_sq", "max_exp_avg_sq", "exp_avg", "step"].lazy
                .compactMap { key.hasSuffix(".\($0)") ? String(key.dropLast($0.count + 1)) : nil }.first
            guard let base, known.contains(base) else {
                throw TrainingError.io("\(file): '\(key)' names no parameter of optimizer '\(name)'")
            }
        }
        for (i, (name, _)) in params.enumerated() {
            guard let stepT = entries["\(name).step"] else { continue }
            guard let a = entries["\(name).exp_avg"], let b = entries["\(name).exp_avg_sq"] else {
                throw TrainingError.io("\(file): state of \(name) has a step but lacks exp_avg/exp_avg_sq")
            }
            try adamw.setState(AdamWParamState(step: try stepT.itemInt(), expAvg: a, expAvgSq: b,
                                               maxExpAvgSq: entries["\(name).max_exp_avg_sq"]), of: i)
        }
        stepsTaken = try entries["__steps_taken__"]?.itemInt() ?? 0
    }

    /// The checkpoint written before optimizers were named: `optimizer.safetensors`, AdamW state
    /// by position in this (the only) optimizer's parameter list.
    public func importPositionalState(_ entries: [String: Tensor]) throws {
        try adamw.importState(entries)
        stepsTaken = try entries["__step__"]?.itemInt() ?? 0
    }
}

/// What a stage's iteration calls: `backward(loss, for:)`, `step(_:)`, `only(_:)` (freeze the other
/// optimizers' parameters while building a loss), and `record` for metrics. With gradient
/// accumulation the stage's iteration runs once per micro-batch; `step` acts on the last one.
public final class StepContext {
    public let optimizers: [NamedOptimizer]
    let scaler: GradScaler?
    let accumulation: Int
    /// Called with each optimizer's gradients after unscaling, before clipping (data parallelism's
    /// all-reduce goes here).
    let gradientSync: ((NamedOptimizer) throws -> Void)?
    /// 0-based optimizer step being taken (the trainer's `step` before it advances).
    public let step: Int
    public internal(set) var microBatch = 0
    /// Loss terms of this iteration (mean over micro-batches).
    public internal(set) var terms: [String: Double] = [:]
    var overflowed: Set<String> = []
    var backwardSeconds = 0.0
    var optimizerSeconds = 0.0

    init(optimizers: [NamedOptimizer], scaler: GradScaler?, accumulation: Int, step: Int,
         gradientSync: ((NamedOptimizer) throws -> Void)?) {
        self.optimizers = optimizers
        self.scaler = scaler
        self.accumulation = accumulation
        self.step = step
        self.gradientSync = gradientSync
    }

    public func optimizer(_ name: String) throws -> NamedOptimizer {
        guard let o = optimizers.first(where: { $0.name == name }) else {
            throw TrainingError.invalid("no optimizer named '\(name)' (the stage declares "
                                        + optimizers.map(\.name).joined(separator: ", ") + ")")
        }
        return o
    }

    /// Records loss terms (detached scalars) for metrics.jsonl; a non-finite value stops the run.
    public func record(_ values: [String: Tensor]) throws {
        for (k, v) in values.sorted(by: { $0.key < $1.key }) {
            let x = try v.detach().item()
            guard x.isFinite else { throw TrainingError.nonFinite(step: step + 1, term: k, value: x) }
            terms[k, default: 0] += x / Double(accumulation)
        }
    }

    /// Backpropagates `loss` (divided over the accumulated micro-batches, scaled for float16) into
    /// the gradients `optimizer` will step with.
    public func backward(_ loss: Tensor, for optimizer: String) throws {
        _ = try self.optimizer(optimizer)
        let t0 = Date()
        let part = accumulation == 1 ? loss : try loss / Double(accumulation)
        try (scaler.map { try $0.scaled(part) } ?? part).backward()
        backwardSeconds += Date().timeIntervalSince(t0)
    }

    /// Runs `body` with every parameter of the other optimizers frozen (requires_grad off), then
    /// restores them: losses built inside leave no gradient on those parameters (Lightning's
    /// `toggle_optimizer`).
    public func only<R>(_ optimizer: String, _ body: () throws -> R) throws -> R {
        let own = Set(try self.optimizer(optimizer).params.map { ObjectIdentifier($0.1) })
        var toggled: [Tensor] = []
        for o in optimizers where o.name != optimizer {
            for (_, p) in o.params where !own.contains(ObjectIdentifier(p)) && p.requiresGrad {
                try p.requiresGrad_(false)
                toggled.append(p)
            }
        }
        defer { for p in toggled { _ = try? p.requiresGrad_(true) } }
        return try body()
    }

    /// On the last micro-batch: unscale → gradient sync → clip → AdamW step → EMA → zero grad.
    /// Earlier micro-batches only accumulate. A float16 overflow skips the step (logged by the trainer).
    public func step(_ name: String) throws {
        let o = try optimizer(name)
        guard microBatch == accumulation - 1 else { return }
        let t0 = Date()
        defer { optimizerSeconds += Date().timeIntervalSince(t0) }
        let tensors = o.params.map(\.1)
        var finite = try scaler?.unscale(tensors) ?? true
        if let gradientSync {
            // Every rank syncs, overflowed or not (they must make the same collectives); a
            // non-finite gradient on any rank reaches all of them through the mean, so all skip.
            try gradientSync(o)
            if scaler != nil { finite = try GradScaler.allFinite(tensors) }
        }
        if finite {
            let clip = o.spec.maxGradNorm
            o.lastGradNorm = try Autograd.clipGradNorm(tensors, maxNorm: clip > 0 ? clip : .infinity)
            try o.adamw.step()
            try o.ema?.step(o.params)
            o.stepsTaken += 1
        } else {
            overflowed.insert(name)
        }
        try o.adamw.zeroGrad()
    }

    /// Drops `name`'s accumulated gradients without stepping (a stage that skips an update).
    public func zeroGrad(_ name: String) throws {
        try optimizer(name).adamw.zeroGrad()
    }
}
