// LRSchedule.swift — learning-rate schedules as diffusers.optimization.get_scheduler defines them
// (constant, constant_with_warmup, linear, cosine), as a pure function of the step so that a
// resumed run continues exactly.
import Foundation
import Inference

public struct LRSchedule: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case constant, constant_with_warmup, linear, cosine }
    public let kind: Kind
    public let baseLR: Double
    public let warmupSteps: Int
    public let totalSteps: Int
    public let numCycles: Double

    public init(kind: String, baseLR: Double, warmupSteps: Int, totalSteps: Int, numCycles: Double = 0.5) throws {
        guard let k = Kind(rawValue: kind) else {
            throw ConfigError(file: "config", "solver.lr_scheduler: unknown schedule '\(kind)'; known: "
                              + Kind.allCases.map(\.rawValue).joined(separator: ", "))
        }
        self.kind = k
        self.baseLR = baseLR
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.numCycles = numCycles
    }

    /// Multiplier of the base learning rate at optimizer step `step` (0-based, as LambdaLR sees it).
    public func factor(at step: Int) -> Double {
        let s = Double(step), w = Double(warmupSteps)
        switch kind {
        case .constant:
            return 1
        case .constant_with_warmup:
            return step < warmupSteps ? s / max(1, w) : 1
        case .linear:
            if step < warmupSteps { return s / max(1, w) }
            return max(0, Double(totalSteps - step) / max(1, Double(totalSteps - warmupSteps)))
        case .cosine:
            if step < warmupSteps { return s / max(1, w) }
            let progress = (s - w) / max(1, Double(totalSteps - warmupSteps))
            return max(0, 0.5 * (1 + cos(Double.pi * numCycles * 2 * progress)))
        }
    }

    public func learningRate(at step: Int) -> Double { baseLR * factor(at: step) }
}
