// AutogradTests.swift — gradients against central finite differences in float64 (linear, conv2d,
// group_norm, attention), autograd.grad with create_graph (a gradient penalty's second
// derivative), and no-grad scopes.
import Foundation
import Testing
@testable import Torch

/// Compares backward() with central differences of `f` (a scalar function of float64 tensors).
/// Each input is rebuilt from its values for every evaluation, so nothing is mutated in place.
private func checkGradients(_ inputs: [(values: [Double], shape: [Int])], h: Double = 1e-6, tol: Double = 1e-6,
                            _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                            _ f: ([Tensor]) throws -> Tensor) throws {
    let leaves = try inputs.map { try Tensor($0.values, shape: $0.shape).requiresGrad_(true) }
    let loss = try f(leaves)
    #expect(loss.shape == [] && loss.dtype == .float64, sourceLocation: sourceLocation)
    try loss.backward()
    func value(_ vals: [[Double]]) throws -> Double {
        try Torch.noGrad { try f(zip(vals, inputs).map { try Tensor($0.0, shape: $0.1.shape) }).item() }
    }
    var worst = 0.0
    for (j, input) in inputs.enumerated() {
        let analytic = try #require(leaves[j].grad, "\(what): input \(j) has no gradient", sourceLocation: sourceLocation)
        #expect(analytic.shape == input.shape, sourceLocation: sourceLocation)
        let a = try analytic.toArray(Double.self)
        var vals = inputs.map(\.values)
        for i in input.values.indices {
            let x0 = vals[j][i]
            vals[j][i] = x0 + h
            let fp = try value(vals)
            vals[j][i] = x0 - h
            let fm = try value(vals)
            vals[j][i] = x0
            let numeric = (fp - fm) / (2 * h)
            let err = Swift.abs(a[i] - numeric) / Swift.max(1, Swift.abs(numeric))
            worst = Swift.max(worst, err)
            #expect(err <= tol, "\(what): d/d input\(j)[\(i)] analytic \(a[i]) vs numeric \(numeric)",
                    sourceLocation: sourceLocation)
        }
        // A gradient that is identically zero would make the comparison vacuous.
        #expect(a.contains { Swift.abs($0) > 1e-3 }, "\(what): gradient of input \(j) is ~0",
                sourceLocation: sourceLocation)
    }
    #expect(worst <= tol, sourceLocation: sourceLocation)
}

private func randomValues(_ count: Int, _ g: Generator) throws -> [Double] {
    try Tensor.randn([count], dtype: .float64, generator: g).toArray(Double.self)
}

@Suite("Autograd", .serialized)
struct AutogradTests {
    @Test func linearGradientMatchesFiniteDifferences() throws {
        let g = try Generator(seed: 11)
        let r = try Tensor(try randomValues(6, g), shape: [3, 2])
        try checkGradients([(try randomValues(12, g), [3, 4]), (try randomValues(8, g), [2, 4]),
                            (try randomValues(2, g), [2])], "linear") { t in
            try (F.linear(t[0], weight: t[1], bias: t[2]).sin() * r).sum()
        }
    }

    @Test func conv2dGradientMatchesFiniteDifferences() throws {
        let g = try Generator(seed: 12)
        let r = try Tensor(try randomValues(3 * 2 * 2, g), shape: [1, 3, 2, 2])
        // (1,2,4,4) input, (3,2,3,3) kernel, stride 2, padding 1 → (1,3,2,2).
        try checkGradients([(try randomValues(32, g), [1, 2, 4, 4]), (try randomValues(54, g), [3, 2, 3, 3]),
                            (try randomValues(3, g), [3])], "conv2d") { t in
            try (F.conv2d(t[0], weight: t[1], bias: t[2], stride: (2, 2), padding: (1, 1)).tanh() * r).sum()
        }
    }

    /// F.conv2d sends 1×1 convolutions and those of ≤ 4 input channels on float32 CPU batches to
    /// LibTorch's native kernel (thnn_conv2d) instead of oneDNN (CTorch's tc_conv2d); values and all
    /// three gradients must be those of LibTorch's own choice, taken here one sample at a time (batch 1
    /// keeps LibTorch's choice); the 1×1 case also against the GEMM over channels that it is.
    @Test(arguments: [(5, 7, 1, 1, 0), (3, 6, 3, 2, 1), (4, 5, 3, 1, 1)])
    func nativeConv2dOnBatchesMatchesLibTorchsChoice(_ c: Int, _ o: Int, _ k: Int, _ stride: Int, _ pad: Int) throws {
        let g = try Generator(seed: 14)
        let (n, h, w) = (3, 8, 6)
        let x = try Tensor.randn([n, c, h, w], generator: g).requiresGrad_()
        let weight = try Tensor.randn([o, c, k, k], generator: g).requiresGrad_()
        let bias = try Tensor.randn([o], generator: g).requiresGrad_()
        func conv(_ t: Tensor) throws -> Tensor {
            try F.conv2d(t, weight: weight, bias: bias, stride: (stride, stride), padding: (pad, pad))
        }
        let y = try conv(x)
        let r = try Tensor.randn(y.shape, generator: g)
        let batched = try Autograd.grad(outputs: [(y * r).sum()], inputs: [x, weight, bias])

        let perSample = try Tensor.cat((0..<n).map { i in try conv(x.narrow(0, start: i, length: 1)) }, dim: 0)
        let reference = try Autograd.grad(outputs: [(perSample * r).sum()], inputs: [x, weight, bias])
        expectClose(try dbl(y), try dbl(perSample), tol: 1e-5, "batched vs per-sample output")
        for (j, name) in ["input", "weight", "bias"].enumerated() {
            let a = try #require(batched[j]), e = try #require(reference[j])
            #expect(a.shape == e.shape, "\(name) gradient shape")
            expectClose(try dbl(a), try dbl(e), tol: 1e-5, "\(name) gradient")
        }
        if k == 1 {
            let gemm = try weight.reshape([o, c]).matmul(x.reshape([n, c, h * w])).reshape([n, o, h, w])
                + bias.reshape([1, o, 1, 1])
            expectClose(try dbl(y), try dbl(gemm), tol: 1e-5, "batched vs GEMM output")
        }
        // A channels-last (non-contiguous) batch takes LibTorch's path and agrees too.
        let cl = try x.detach().permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
        expectClose(try dbl(conv(cl)), try dbl(y), tol: 1e-5, "channels-last input")
    }

    @Test func groupNormGradientMatchesFiniteDifferences() throws {
        let g = try Generator(seed: 13)
        let r = try Tensor(try randomValues(2 * 4 * 2 * 2, g), shape: [2, 4, 2, 2])
        try checkGradients([(try randomValues(32, g), [2, 4, 2, 2]), (try randomValues(4, g), [4]),
                            (try randomValues(4, g), [4])], "group_norm") { t in
            try (F.groupNorm(t[0], groups: 2, weight: t[1], bias: t[2], eps: 1e-5) * r).sum()
        }
    }

    @Test func attentionGradientMatchesFiniteDifferences() throws {
        let g = try Generator(seed: 14)
        let r = try Tensor(try randomValues(2 * 3 * 4, g), shape: [1, 2, 3, 4])
        // (B=1, H=2, L=3, E=4) queries against S=5 keys.
        try checkGradients([(try randomValues(24, g), [1, 2, 3, 4]), (try randomValues(40, g), [1, 2, 5, 4]),
                            (try randomValues(40, g), [1, 2, 5, 4])], "attention") { t in
            try (F.scaledDotProductAttention(t[0], t[1], t[2]) * r).sum()
        }
    }

    @Test func analyticGradientsOfSimpleFunctions() throws {
        // d/dx Σ x² = 2x; d/dx Σ sin(x)·w = cos(x)·w.
        let x = try Tensor([1.0, -2.0, 0.5]).requiresGrad_()
        #expect(x.isLeaf && x.requiresGrad)
        try (x * x).sum().backward()
        #expect(try dbl(try #require(x.grad)) == [2, -4, 1])
        // Gradients accumulate until zeroed; setGrad(nil) makes them None.
        try (x * 3).sum().backward()
        #expect(try dbl(try #require(x.grad)) == [5, -1, 4])
        try x.zeroGrad()
        #expect(try dbl(try #require(x.grad)) == [0, 0, 0])
        try x.setGrad(nil)
        #expect(x.grad == nil)
        // backward with an explicit gradient for a non-scalar output.
        let y = try x * x
        #expect(!y.isLeaf)
        try y.backward(try Tensor([1.0, 0, 2]))
        #expect(try dbl(try #require(x.grad)) == [2, 0, 2])
        // detach cuts the graph.
        let d = try x.detach()
        #expect(!d.requiresGrad)
        // Backward through a tensor that needs no gradient is an error.
        #expect(throws: TorchError.self) { try Tensor([1.0]).sum().backward() }
    }

    @Test func autogradGradWithCreateGraphGivesSecondDerivative() throws {
        // f(x) = Σ x³ → g = 3x²; penalty P = Σ g² = 9 Σ x⁴ → dP/dx = 36 x³.
        let x = try Tensor([1.0, 2.0, -0.5]).requiresGrad_()
        let y = try x.pow(3).sum()
        let grads = try Autograd.grad(outputs: [y], inputs: [x], createGraph: true)
        let g = try #require(grads.first ?? nil)
        #expect(try dbl(g) == [3, 12, 0.75])
        #expect(g.requiresGrad)  // part of the graph
        let penalty = try (g * g).sum()
        let second = try Autograd.grad(outputs: [penalty], inputs: [x])
        let h = try #require(second.first ?? nil)
        expectClose(try dbl(h), [36, 288, -4.5], tol: 1e-12, "d penalty / dx")
        #expect(x.grad == nil)  // autograd.grad does not accumulate into .grad
        // Without createGraph the gradient is a constant.
        let y2 = try x.pow(3).sum()
        let plain = try #require(try Autograd.grad(outputs: [y2], inputs: [x]).first ?? nil)
        #expect(!plain.requiresGrad)
        // allowUnused: an input that does not reach the output gives nil.
        let unused = try Tensor([1.0]).requiresGrad_()
        let y3 = try (x * 2).sum()
        let r = try Autograd.grad(outputs: [y3], inputs: [x, unused], allowUnused: true)
        #expect(r.count == 2 && r[1] == nil)
        #expect(try dbl(try #require(r[0])) == [2, 2, 2])
        // Without allowUnused the same call is an error.
        let y4 = try (x * 2).sum()
        #expect(throws: TorchError.self) { try Autograd.grad(outputs: [y4], inputs: [x, unused]) }
    }

    @Test func noGradScopeTurnsRecordingOffAndRestoresIt() throws {
        let x = try Tensor([1.0, 2.0]).requiresGrad_()
        #expect(Torch.isGradEnabled)
        let inside: (Bool, Bool) = try Torch.noGrad {
            let y = try x * 2
            return (Torch.isGradEnabled, y.requiresGrad)
        }
        #expect(inside.0 == false)
        #expect(inside.1 == false)
        #expect(Torch.isGradEnabled)
        #expect(try (x * 2).requiresGrad)
        // Nested scopes restore the enclosing state.
        try Torch.noGrad {
            #expect(!Torch.isGradEnabled)
            try Torch.withGradEnabled(true) {
                let records = try (x * 2).requiresGrad
                #expect(Torch.isGradEnabled)
                #expect(records)
            }
            #expect(!Torch.isGradEnabled)
        }
        #expect(Torch.isGradEnabled)
        // A throwing body restores the state as well.
        struct Boom: Error {}
        #expect(throws: Boom.self) { try Torch.noGrad { throw Boom() } }
        #expect(Torch.isGradEnabled)
    }

    /// torch.inference_mode: autograd off inside, restored after (also when the body throws); what is
    /// made inside is an inference tensor with the same values, readable outside, and saving one for
    /// backward is LibTorch's error, thrown, not a crash.
    @Test func inferenceModeScopesAndMarksTensors() throws {
        let w = try Tensor([1.0, 2.0]).requiresGrad_()
        let plain = try Torch.noGrad { try w * 3 }
        let made = try Torch.inferenceMode { () throws -> Tensor in
            #expect(Torch.isInferenceModeEnabled && !Torch.isGradEnabled)
            return try w * 3
        }
        #expect(!Torch.isInferenceModeEnabled && Torch.isGradEnabled)
        #expect(made.isInference && !plain.isInference && !made.requiresGrad)
        #expect(try made.maxAbsDiff(plain) == 0)
        #expect(try (made + 1).sum().item() == 11)
        #expect(throws: TorchError.self) { try (w * made).sum().backward() }
        struct Boom: Error {}
        #expect(throws: Boom.self) { try Torch.inferenceMode { throw Boom() } }
        #expect(!Torch.isInferenceModeEnabled && Torch.isGradEnabled)
    }
}
