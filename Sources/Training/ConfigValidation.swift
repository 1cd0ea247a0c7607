// ConfigValidation.swift — the checks `train` runs before it starts, also run alone by
// `personalive config validate`: value ranges, known names, and that referenced files exist.
import Foundation
import NN
import Torch

extension TrainingConfig {
    /// Every problem found, each naming its key path; empty when the config is usable.
    public func problems(requiredFiles: [(key: String, path: String)] = []) -> [String] {
        var out: [String] = []
        let s = solver
        if !(s.learning_rate > 0) { out.append("solver.learning_rate must be > 0 (got \(s.learning_rate))") }
        if s.max_train_steps < 1 { out.append("solver.max_train_steps must be >= 1") }
        if s.gradient_accumulation_steps < 1 { out.append("solver.gradient_accumulation_steps must be >= 1") }
        if s.lr_warmup_steps < 0 { out.append("solver.lr_warmup_steps must be >= 0") }
        if LRSchedule.Kind(rawValue: s.lr_scheduler) == nil {
            out.append("solver.lr_scheduler '\(s.lr_scheduler)' is unknown; known: "
                       + LRSchedule.Kind.allCases.map(\.rawValue).joined(separator: ", "))
        }
        if !(0..<1).contains(s.adam_beta1) || !(0..<1).contains(s.adam_beta2) {
            out.append("solver.adam_beta1/adam_beta2 must lie in [0, 1)")
        }
        if s.use_ema, !(0...1).contains(s.ema_decay) { out.append("solver.ema_decay must lie in [0, 1]") }
        do {
            let device = try Device(parsing: s.device)
            if case .cuda = device, !Torch.cudaIsAvailable {
                out.append("solver.device is '\(s.device)' but this LibTorch has no CUDA device")
            }
        } catch {
            out.append("solver.device: \(error)")
        }
        if !["fp32", "fp16", "bf16"].contains(s.weight_dtype) {
            out.append("solver.weight_dtype '\(s.weight_dtype)' is unknown; known: fp32, fp16, bf16")
        }
        if data.train_bs < 1 { out.append("data.train_bs must be >= 1") }
        if validation.num_frames < 0 { out.append("validation.num_frames must be >= 0 (0 = no animated clip)") }
        if !(validation.guidance_scale >= 1) {
            out.append("validation.guidance_scale must be >= 1 (1 = no classifier-free guidance), got \(validation.guidance_scale)")
        }
        if data.color_jitter.count != 3 || data.color_jitter.contains(where: { !($0 >= 0) }) {
            out.append("data.color_jitter must be three strengths >= 0 [brightness, contrast, saturation] (got \(data.color_jitter))")
        }
        if data.cache_latents, !["stage1", "unet"].contains(stage) {
            out.append("data.cache_latents: only the stage1 and unet stages have frozen encoders to cache (stage is '\(stage)')")
        }
        if run_name.isEmpty || run_name.contains("/") { out.append("run_name must be a non-empty folder name") }
        if checkpointing.keep_last < 0 { out.append("checkpointing.keep_last must be >= 0") }
        for (key, path) in requiredFiles where !FileManager.default.fileExists(atPath: path) {
            out.append("\(key): file not found: \(path)")
        }
        return out
    }
}

/// Checks the distillation stages' sections (stage 2 and stage 3) share for their loss-mix keys.
extension KeyedDecodingContainer {
    /// lpips_weight > 0 needs LPIPS weights.
    func checkLPIPS(weight: Double, paths: [String], key: Key) throws {
        if weight > 0, paths.isEmpty {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self,
                debugDescription: "lpips_weight \(weight) > 0 needs lpips_path (the lpips package's vgg.pth and torchvision's VGG16 weights); set lpips_weight: 0 to train without LPIPS")
        }
    }

    /// Per-optimizer overrides keyed by the stage's optimizer names; an unknown name is refused with
    /// the closest known one.
    func optimizerOverrides(_ key: Key, default fallback: [String: OptimizerSection], names: [String],
                            stage: String) throws -> [String: OptimizerSection] {
        let optimizers = try value(key, default: fallback)
        if let bad = optimizers.keys.sorted().first(where: { !names.contains($0) }) {
            let hint = closestKey(to: bad, in: names).map { " (did you mean '\($0)'?)" } ?? ""
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self,
                debugDescription: "unknown optimizer '\(bad)'\(hint); \(stage) has \(names.joined(separator: ", "))")
        }
        return optimizers
    }
}
