// PrecisionTests.swift — device/precision plumbing on the CPU: autocast regions, frozen modules
// in the weight dtype, loss scaling, and a mixed-precision (bfloat16) run of the shared trainer.
// The CUDA float16 path is the same code with another device and dtype.
import Foundation
import Logging
import NN
import Testing
import Torch
@testable import Training

@Suite(.serialized) struct PrecisionTests {
    let logger = Logger(label: "test")

    @Test func autocastRegionsNestAndRestore() throws {
        let a = try Tensor.randn([4, 8]), b = try Tensor.randn([8, 3])
        #expect(!Autocast.isEnabled(.cpu))
        try Autocast.with(device: .cpu, dtype: .bfloat16) { () throws in
            #expect(Autocast.isEnabled(.cpu))
            #expect(try a.matmul(b).dtype == .bfloat16)
            // fp32-policy ops stay float32 inside the region
            #expect(try a.softmax(dim: 1).dtype == .float32)
            try Autocast.with(device: .cpu, dtype: .bfloat16, enabled: false) { () throws in
                #expect(!Autocast.isEnabled(.cpu))
                #expect(try a.matmul(b).dtype == .float32)
            }
            #expect(Autocast.isEnabled(.cpu))
        }
        #expect(!Autocast.isEnabled(.cpu))
        #expect(try a.matmul(b).dtype == .float32)
        #expect(throws: TorchError.self) { try Autocast.with(device: .cpu, dtype: .int64) {} }
        #expect(!Autocast.isEnabled(.cpu), "a failed enter must leave autocast off")
    }

    @Test func frozenModulesTakeTheWeightDtype() throws {
        let p = Precision(device: .cpu, weightDtype: .bfloat16)
        let frozen = try Linear(4, 3), trained = try Linear(4, 3)
        try p.placeFrozen(frozen)
        try p.placeTrained(trained)
        #expect(frozen.weight.dtype == .bfloat16 && frozen.bias!.dtype == .bfloat16)
        #expect(trained.weight.dtype == .float32)
        let x = try p.frozenInput(Tensor.randn([2, 4]))
        #expect(x.dtype == .bfloat16)
        #expect(try frozen(x).dtype == .bfloat16)
        #expect(p.isMixed && !p.needsGradScaler)
        #expect(Precision(device: .cuda(0), weightDtype: .float16).needsGradScaler)
    }

    @Test func cpuConfigsTrainInFP32() throws {
        var s = SolverSection()
        s.weight_dtype = "fp16"
        let p = try Precision(solver: s)
        #expect(p.device == .cpu && p.weightDtype == .float32 && !p.isMixed)
        s.weight_dtype = "fp8"
        #expect(throws: TrainingError.self) { try Precision(solver: s) }
    }

    @Test func gradScalerSkipsOverflowAndGrows() throws {
        let scaler = GradScaler(initScale: 1024, growthInterval: 2)
        let w = try Tensor.ones([3]).requiresGrad_()
        try (scaler.scaled((w * 2).sum())).backward()
        #expect(try scaler.unscale([w]))
        #expect(try w.grad!.toArray(Float.self) == [2, 2, 2], "gradients must come back unscaled")
        scaler.update(foundInf: false)
        scaler.update(foundInf: false)
        #expect(scaler.scale == 2048 && scaler.growthTracker == 0)
        try w.grad!.fill_(Double.infinity)
        #expect(try !scaler.unscale([w]))
        scaler.update(foundInf: true)
        #expect(scaler.scale == 1024)
    }

    @Test func mixedPrecisionRunTrainsAndKeepsFP32Masters() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Torch.manualSeed(4)
        let stage = try RegressionStage()
        stage.precision = Precision(device: .cpu, weightDtype: .bfloat16)
        let trainer = try Trainer(config: config(in: dir, steps: 30), stage: stage, logger: logger)
        #expect(try trainer.run() == 30)
        let l = losses(dir)
        let first = l.prefix(5).reduce(0, +) / 5, last = l.suffix(5).reduce(0, +) / 5
        #expect(last < first * 0.5, "bf16 autocast loss did not fall: \(first) → \(last)")
        #expect(stage.net.namedParameters().allSatisfy { $0.1.dtype == .float32 })
        let cp = try #require(trainer.checkpoints.latest())
        let saved = try SafeTensorsFile(path: cp.appendingPathComponent("net.safetensors").path)
        #expect(try saved.loadAll().values.allSatisfy { $0.dtype == .float32 })
    }
}
