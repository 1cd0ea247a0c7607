// Precision.swift — where a run computes and in which precision, as the reference scripts set it
// up through accelerate: every module on `solver.device`; frozen networks (VAE, CLIP, motion
// extractor) cast to `weight_dtype` and fed inputs of that dtype; the trained networks keep
// float32 master weights and run under autocast in `weight_dtype` (accelerate's mixed_precision),
// with a GradScaler for float16. On the CPU everything is float32.
import Logging
import NN
import Torch

public struct Precision: Sendable {
    public let device: Device
    /// dtype of the frozen networks and of autocast; float32 means no mixed precision.
    public let weightDtype: DType

    /// Any device and dtype (bfloat16 autocast works on the CPU too; tests use it).
    public init(device: Device = .cpu, weightDtype: DType = .float32) {
        self.device = device
        self.weightDtype = weightDtype
    }

    /// From the solver section: `device` and, on CUDA, `weight_dtype`; the CPU runs float32.
    public init(solver: SolverSection, logger: Logger? = nil) throws {
        let device = try Device(parsing: solver.device)
        let dtype = try Self.dtype(solver.weight_dtype)
        if device == .cpu, dtype != .float32 {
            logger?.notice("solver.weight_dtype \(solver.weight_dtype) applies on CUDA; the CPU trains in fp32")
            self.init(device: .cpu, weightDtype: .float32)
        } else {
            self.init(device: device, weightDtype: dtype)
        }
    }

    public static func dtype(_ name: String) throws -> DType {
        switch name {
        case "fp32": return .float32
        case "fp16": return .float16
        case "bf16": return .bfloat16
        default: throw TrainingError.invalid("solver.weight_dtype '\(name)' is unknown; known: fp32, fp16, bf16")
        }
    }

    public var isMixed: Bool { weightDtype != .float32 }
    /// float16 gradients underflow without loss scaling (bfloat16 has float32's range).
    public var needsGradScaler: Bool { weightDtype == .float16 }

    /// A trained module: moved to the device, float32.
    public func placeTrained(_ m: Module) throws { try m.to(device: device) }

    /// A frozen module: moved to the device and cast to the weight dtype.
    public func placeFrozen(_ m: Module) throws {
        try m.to(device: device)
        if isMixed { try m.to(dtype: weightDtype) }
    }

    /// A tensor on the run's device (dtype kept).
    public func input(_ t: Tensor) throws -> Tensor { t.device == device ? t : try t.to(device) }

    /// A floating-point input of a frozen module: on the device, in the weight dtype.
    public func frozenInput(_ t: Tensor) throws -> Tensor {
        t.device == device && t.dtype == weightDtype ? t : try t.to(device, weightDtype)
    }

    /// Runs `body` under autocast in the weight dtype when the run is mixed-precision.
    public func autocast<R>(_ body: () throws -> R) throws -> R {
        guard isMixed else { return try body() }
        return try Autocast.with(device: device, dtype: weightDtype, body)
    }
}
