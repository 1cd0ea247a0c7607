// DDIMScheduler.swift — mirrors diffusers.schedulers.scheduling_ddim.DDIMScheduler (diffusers 0.27),
// plus PersonaLive's variant (src/scheduler/scheduler_ddim.py): a fixed step length
// (`set_step_length(333)`, t = [999, 666, 333, 0], the t = 0 step returns x0) and per-sample /
// per-frame timestep tensors in `step` and `addNoise`.
//
// The noise schedule is built like torch 2.x does it (fp32 linspace with its fused multiply-adds, fp32
// square, cumprod accumulated in double and rounded per element as ATen's CPU kernel does), so betas
// and alphas_cumprod equal diffusers' bit for bit whatever LibTorch version is linked.
import Foundation
import NN
import Torch

public final class DDIMScheduler {
    /// The scheduler's `scheduler_config.json` / constructor kwargs (upstream key names).
    public struct Config: Codable, Sendable, Equatable {
        public var num_train_timesteps: Int = 1000
        public var beta_start: Double = 0.0001
        public var beta_end: Double = 0.02
        public var beta_schedule: String = "linear"
        public var trained_betas: [Double]?
        public var clip_sample: Bool = true
        public var set_alpha_to_one: Bool = true
        public var steps_offset: Int = 0
        public var prediction_type: String = "epsilon"
        public var thresholding: Bool = false
        public var dynamic_thresholding_ratio: Double = 0.995
        public var clip_sample_range: Double = 1.0
        public var sample_max_value: Double = 1.0
        public var timestep_spacing: String = "leading"
        public var rescale_betas_zero_snr: Bool = false

        public init() {}

        /// PersonaLive's inference scheduler: scaled_linear 0.00085→0.02, trailing spacing, ε-prediction.
        public static var personaLive: Config {
            var c = Config()
            c.beta_start = 0.00085
            c.beta_end = 0.02
            c.beta_schedule = "scaled_linear"
            c.clip_sample = false
            c.steps_offset = 1
            c.timestep_spacing = "trailing"
            return c
        }

        enum K: String, CodingKey, CaseIterable {
            case num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, clip_sample,
                 set_alpha_to_one, steps_offset, prediction_type, thresholding, dynamic_thresholding_ratio,
                 clip_sample_range, sample_max_value, timestep_spacing, rescale_betas_zero_snr
        }

        public init(from decoder: Decoder) throws {
            // `skip_prk_steps` is in the PNDM scheduler configs SD 1.x ships, which DDIM is usually
            // built from (DDIMScheduler.from_config); diffusers ignores it too.
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue), ignoring: ["skip_prk_steps"])
            let c = try decoder.container(keyedBy: K.self)
            let d = Config()
            num_train_timesteps = try c.value(.num_train_timesteps, default: d.num_train_timesteps)
            beta_start = try c.value(.beta_start, default: d.beta_start)
            beta_end = try c.value(.beta_end, default: d.beta_end)
            beta_schedule = try c.value(.beta_schedule, default: d.beta_schedule)
            trained_betas = try c.value(.trained_betas, default: nil)
            clip_sample = try c.value(.clip_sample, default: d.clip_sample)
            set_alpha_to_one = try c.value(.set_alpha_to_one, default: d.set_alpha_to_one)
            steps_offset = try c.value(.steps_offset, default: d.steps_offset)
            prediction_type = try c.value(.prediction_type, default: d.prediction_type)
            thresholding = try c.value(.thresholding, default: d.thresholding)
            dynamic_thresholding_ratio = try c.value(.dynamic_thresholding_ratio, default: d.dynamic_thresholding_ratio)
            clip_sample_range = try c.value(.clip_sample_range, default: d.clip_sample_range)
            sample_max_value = try c.value(.sample_max_value, default: d.sample_max_value)
            timestep_spacing = try c.value(.timestep_spacing, default: d.timestep_spacing)
            rescale_betas_zero_snr = try c.value(.rescale_betas_zero_snr, default: d.rescale_betas_zero_snr)
        }
    }

    public enum PredictionType: String, Sendable { case epsilon, v_prediction, sample }

    /// What one `step` returns (PersonaLive's `step(return_dict=False)` gives both, in this order).
    public struct StepOutput {
        public let prevSample: Tensor
        public let predOriginalSample: Tensor
    }

    public let config: Config
    public let predictionType: PredictionType
    /// fp32 (num_train_timesteps,) tensors on the CPU.
    public let betas: Tensor
    public let alphas: Tensor
    public let alphasCumprod: Tensor
    /// fp32 0-dim: 1 with set_alpha_to_one, else alphas_cumprod[0].
    public let finalAlphaCumprod: Tensor
    /// The schedule as Doubles (exactly the fp32 values), for host-side arithmetic.
    public let alphasCumprodValues: [Double]

    /// Descending inference timesteps from `setTimesteps` (all training steps until then).
    public private(set) var timesteps: [Int]
    public private(set) var numInferenceSteps: Int?
    /// PersonaLive's `set_step_length`: prev_t = t − stepLength instead of t − T / num_inference_steps.
    public var stepLength: Int?

    public init(_ config: Config) throws {
        self.config = config
        let n = config.num_train_timesteps
        guard n > 0 else { throw TorchError("DDIMScheduler: num_train_timesteps must be positive, got \(n)") }
        guard let p = PredictionType(rawValue: config.prediction_type) else {
            throw TorchError("DDIMScheduler: prediction_type '\(config.prediction_type)' must be epsilon, v_prediction or sample")
        }
        predictionType = p
        guard ["leading", "trailing", "linspace"].contains(config.timestep_spacing) else {
            throw TorchError("DDIMScheduler: timestep_spacing '\(config.timestep_spacing)' must be leading, trailing or linspace")
        }

        var b: Tensor
        if let trained = config.trained_betas {
            guard trained.count == n else {
                throw TorchError("DDIMScheduler: trained_betas has \(trained.count) values; num_train_timesteps is \(n)")
            }
            b = try Tensor(trained.map { Float($0) })
        } else {
            switch config.beta_schedule {
            case "linear":
                b = try Tensor(Self.linspaceFloat32(config.beta_start, config.beta_end, n))
            case "scaled_linear":
                b = try Tensor(Self.linspaceFloat32(config.beta_start.squareRoot(), config.beta_end.squareRoot(), n)
                    .map { $0 * $0 })
            case "squaredcos_cap_v2":
                b = try Tensor(Self.cosineBetas(n).map { Float($0) })
            default:
                throw TorchError("DDIMScheduler: beta_schedule '\(config.beta_schedule)' is not implemented "
                                 + "(linear, scaled_linear, squaredcos_cap_v2, or trained_betas)")
            }
        }
        if config.rescale_betas_zero_snr { b = try Self.rescaleZeroTerminalSNR(b) }
        betas = b
        alphas = try 1.0 - b
        let cum = Self.cumprod(try alphas.toArray(Float.self))
        alphasCumprod = try Tensor(cum)
        alphasCumprodValues = cum.map(Double.init)
        finalAlphaCumprod = try Tensor.scalar(config.set_alpha_to_one ? 1.0 : Double(cum[0]), dtype: .float32)
        timesteps = Array((0..<n).reversed())
    }

    /// Decodes a diffusers `scheduler_config.json` (unknown keys are errors).
    public convenience init(configFile path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        do {
            try self.init(JSONDecoder().decode(Config.self, from: data))
        } catch let e as UnknownConfigKeyError {
            throw TorchError("\(path): \(e)")
        }
    }

    // MARK: schedule

    /// torch.linspace(start, end, n, dtype=float32) as torch 2.x's CPU kernel computes it: a float
    /// step, fused multiply-adds from the start for the first half and from the end for the rest.
    /// (LibTorch 1.x rounds differently by an ulp here and there; diffusers' schedule is torch 2.x's.)
    static func linspaceFloat32(_ start: Double, _ end: Double, _ n: Int) -> [Float] {
        let s = Float(start), e = Float(end)
        guard n > 1 else { return n == 1 ? [s] : [] }
        let step = (e - s) / Float(n - 1)
        let halfway = n / 2
        return (0..<n).map { i in
            i < halfway ? s.addingProduct(step, Float(i)) : e.addingProduct(-step, Float(n - 1 - i))
        }
    }

    /// torch.cumprod on a CPU fp32 tensor: accumulates in double, rounds each output to fp32.
    static func cumprod(_ xs: [Float]) -> [Float] {
        var acc = 1.0
        return xs.map { acc *= Double($0); return Float(acc) }
    }

    /// diffusers `betas_for_alpha_bar` with the cosine transform (computed in Python floats).
    static func cosineBetas(_ n: Int, maxBeta: Double = 0.999) -> [Double] {
        func alphaBar(_ t: Double) -> Double { let c = cos((t + 0.008) / 1.008 * Double.pi / 2); return c * c }
        return (0..<n).map { i in
            let t1 = Double(i) / Double(n), t2 = Double(i + 1) / Double(n)
            return min(1 - alphaBar(t2) / alphaBar(t1), maxBeta)
        }
    }

    /// diffusers `rescale_zero_terminal_snr` (arXiv 2305.08891, Algorithm 1).
    static func rescaleZeroTerminalSNR(_ betas: Tensor) throws -> Tensor {
        let a = try (1.0 - betas).toArray(Float.self)
        var sq = cumprod(a).map { Float($0).squareRoot() }
        let first = sq[0], last = sq[sq.count - 1]
        sq = sq.map { ($0 - last) * first / (first - last) }
        let bar = sq.map { $0 * $0 }
        var out: [Float] = [1 - bar[0]]
        for i in 1..<bar.count { out.append(1 - bar[i] / bar[i - 1]) }
        return try Tensor(out)
    }

    /// `set_timesteps(n)` with the configured spacing.
    public func setTimesteps(_ n: Int) throws {
        let total = config.num_train_timesteps
        guard n > 0, n <= total else {
            throw TorchError("DDIMScheduler.setTimesteps: \(n) steps; must be in 1...\(total) (num_train_timesteps)")
        }
        numInferenceSteps = n
        timesteps = Self.spacedTimesteps(n, total: total, spacing: config.timestep_spacing, offset: config.steps_offset)
    }

    /// diffusers' numpy arithmetic: round half to even, numpy `arange` length and values.
    static func spacedTimesteps(_ n: Int, total: Int, spacing: String, offset: Int) -> [Int] {
        switch spacing {
        case "linspace":
            let stop = Double(total - 1)
            let step = n > 1 ? stop / Double(n - 1) : 0
            let values = (0..<n).map { i in i == n - 1 && n > 1 ? stop : Double(i) * step }
            return Array(values.map { Int($0.rounded(.toNearestOrEven)) }.reversed())
        case "leading":
            let ratio = total / n
            return (0..<n).reversed().map { $0 * ratio + offset }
        default:  // trailing
            let delta = -Double(total) / Double(n)
            let start = Double(total)
            let count = Int(((0 - start) / delta).rounded(.up))
            let d = (start + delta) - start  // numpy fills start + i·(a[1] − a[0])
            return (0..<count).map { Int((start + Double($0) * d).rounded(.toNearestOrEven)) - 1 }
        }
    }

    /// PersonaLive's `set_step_length`.
    public func setStepLength(_ length: Int) { stepLength = length }

    /// The step between t and the previous timestep that `step` uses.
    public func stepSize() throws -> Int {
        if let stepLength { return stepLength }
        guard let n = numInferenceSteps else {
            throw TorchError("DDIMScheduler.step: call setTimesteps (or set a step length) first")
        }
        return config.num_train_timesteps / n
    }

    // MARK: per-element coefficients

    /// Shapes a per-element (N,) coefficient to broadcast over `x`: N = 1 (all), N = x.shape[0]
    /// (per sample / per flattened frame), or N = b·f for a 5-D (b, c, f, h, w) tensor (per frame).
    func broadcastable(_ coef: Tensor, like x: Tensor) throws -> Tensor {
        let n = coef.numel, s = x.shape
        let c = try coef.to(x.device, x.dtype)
        if n == 1 { return try c.reshape([Int](repeating: 1, count: max(s.count, 1))) }
        if let first = s.first, n == first {
            return try c.reshape([n] + [Int](repeating: 1, count: s.count - 1))
        }
        if s.count == 5, n == s[0] * s[2] { return try c.reshape([s[0], 1, s[2], 1, 1]) }
        throw TorchError("DDIMScheduler: \(n) timesteps do not match a sample of shape \(s) "
                         + "(give 1, one per leading element, or one per frame of a (b, c, f, h, w) tensor)")
    }

    /// Integer timesteps as a flat int64 CPU tensor, range-checked.
    func timestepIndex(_ t: Tensor) throws -> Tensor {
        let idx = try t.to(.cpu).to(.int64).flatten()
        let values = try idx.toArray(Int64.self)
        let total = config.num_train_timesteps
        if let bad = values.first(where: { $0 < 0 || $0 >= total }) {
            throw TorchError("DDIMScheduler: timestep \(bad) is outside 0..<\(total)")
        }
        return idx
    }

    /// alphas_cumprod[t] per element (fp32, flat).
    public func alphaProd(_ t: Tensor) throws -> Tensor { try alphasCumprod.indexSelect(0, timestepIndex(t)) }

    // MARK: add_noise and step

    /// √ᾱ_t·x0 + √(1−ᾱ_t)·noise, with one t for all, one per leading element, or one per frame.
    public func addNoise(_ original: Tensor, noise: Tensor, timesteps t: Tensor) throws -> Tensor {
        let a = try alphaProd(t)
        let sa = try broadcastable(a.pow(0.5), like: original)
        let sb = try broadcastable((1.0 - a).pow(0.5), like: original)
        return try sa * original + sb * noise
    }

    public func addNoise(_ original: Tensor, noise: Tensor, timestep t: Int) throws -> Tensor {
        try addNoise(original, noise: noise, timesteps: Tensor([Int64(t)]))
    }

    /// One DDIM step from `timestep` (one value, or one per leading element / frame) to t − step size.
    /// prev_t < 0 uses final_alpha_cumprod (1 with set_alpha_to_one, so the t = 0 step returns x0).
    public func step(modelOutput: Tensor, timestep t: Tensor, sample: Tensor, eta: Double = 0,
                     useClippedModelOutput: Bool = false, generator: Generator? = nil,
                     varianceNoise: Tensor? = nil) throws -> StepOutput {
        let size = try stepSize()
        let tIdx = try timestepIndex(t)
        let prev = try tIdx.toArray(Int64.self).map { $0 - Int64(size) }
        let aT = try alphasCumprod.indexSelect(0, tIdx)
        // Never index with a negative prev_t: clamp, gather, then choose final_alpha_cumprod.
        let gathered = try alphasCumprod.indexSelect(0, Tensor(prev.map { Swift.max($0, 0) }))
        let aPrevFlat = try Tensor.where(Tensor(prev.map { $0 >= 0 }), gathered, finalAlphaCumprod)
        let alphaT = try broadcastable(aT, like: sample)
        let alphaPrev = try broadcastable(aPrevFlat, like: sample)
        let betaT = try 1.0 - alphaT

        var x0: Tensor, eps: Tensor
        switch predictionType {
        case .epsilon:
            x0 = try (sample - betaT.pow(0.5) * modelOutput) / alphaT.pow(0.5)
            eps = modelOutput
        case .sample:
            x0 = modelOutput
            eps = try (sample - alphaT.pow(0.5) * x0) / betaT.pow(0.5)
        case .v_prediction:
            x0 = try alphaT.pow(0.5) * sample - betaT.pow(0.5) * modelOutput
            eps = try alphaT.pow(0.5) * modelOutput + betaT.pow(0.5) * sample
        }
        if config.thresholding {
            x0 = try thresholdSample(x0)
        } else if config.clip_sample {
            x0 = try x0.clamp(min: -config.clip_sample_range, max: config.clip_sample_range)
        }
        var stdDev: Tensor?
        if eta > 0 {
            let variance = try ((1.0 - alphaPrev) / betaT) * (1.0 - alphaT / alphaPrev)
            stdDev = try variance.pow(0.5) * eta
        }
        if useClippedModelOutput {
            eps = try (sample - alphaT.pow(0.5) * x0) / betaT.pow(0.5)
        }
        var dirCoef = try 1.0 - alphaPrev
        if let stdDev { dirCoef = try dirCoef - stdDev.square() }
        var prevSample = try alphaPrev.pow(0.5) * x0 + dirCoef.pow(0.5) * eps
        if let stdDev {
            if varianceNoise != nil && generator != nil {
                throw TorchError("DDIMScheduler.step: give either a generator or varianceNoise, not both")
            }
            let noise = try varianceNoise ?? Tensor.randn(modelOutput.shape, dtype: modelOutput.dtype,
                                                          generator: generator).to(modelOutput.device)
            prevSample = try prevSample + stdDev * noise
        }
        return StepOutput(prevSample: prevSample, predOriginalSample: x0)
    }

    public func step(modelOutput: Tensor, timestep t: Int, sample: Tensor, eta: Double = 0,
                     generator: Generator? = nil) throws -> StepOutput {
        try step(modelOutput: modelOutput, timestep: Tensor([Int64(t)]), sample: sample, eta: eta, generator: generator)
    }

    /// Dynamic thresholding (Imagen; diffusers `_threshold_sample`): per sample, s = the
    /// `dynamic_thresholding_ratio` quantile of |x0| clamped to [1, sample_max_value]; x0 is clamped
    /// to [−s, s] and divided by s. Computed on the host in fp32 (quantile with linear interpolation).
    func thresholdSample(_ x: Tensor) throws -> Tensor {
        let shape = x.shape
        guard let b = shape.first, b > 0 else { return x }
        let flat = try x.to(.cpu).to(.float32).reshape([b, -1])
        let n = flat.shape[1]
        var scales: [Float] = []
        for i in 0..<b {
            let v = try flat.select(0, i).abs().toArray(Float.self).sorted()
            let pos = config.dynamic_thresholding_ratio * Double(n - 1)
            let lo = Int(pos.rounded(.down)), hi = Swift.min(lo + 1, n - 1)
            let w = Float(pos - Double(lo))
            // torch.lerp's two-sided formula.
            let q = w < 0.5 ? v[lo] + w * (v[hi] - v[lo]) : v[hi] - (v[hi] - v[lo]) * (1 - w)
            scales.append(Swift.min(Swift.max(q, 1), Float(config.sample_max_value)))
        }
        let s = try Tensor(scales, shape: [b, 1])
        let clamped = try flat.maximum(s.neg()).minimum(s) / s
        return try clamped.reshape(shape).to(x.device, x.dtype)
    }

    /// v = √ᾱ·ε − √(1−ᾱ)·x0 (diffusers `get_velocity`), the v-prediction training target.
    public func velocity(sample: Tensor, noise: Tensor, timesteps t: Tensor) throws -> Tensor {
        let a = try alphaProd(t)
        let sa = try broadcastable(a.pow(0.5), like: sample)
        let sb = try broadcastable((1.0 - a).pow(0.5), like: sample)
        return try sa * noise - sb * sample
    }
}
