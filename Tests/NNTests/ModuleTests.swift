// ModuleTests.swift — PyTorch-style key paths of nested modules, strict/non-strict state-dict
// loading with full problem reports, freezing by glob, train/eval, dtype casting that keeps
// parameter identity, BatchNorm2d running statistics and layer forward values.
import Foundation
import Testing
import NN
import Torch

private func dbl(_ t: Tensor) throws -> [Double] { try t.toArray(Double.self) }

private func expectClose(_ actual: [Double], _ expected: [Double], tol: Double = 1e-6, _ what: String = "",
                         sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "\(what): \(actual.count) vs \(expected.count) values",
            sourceLocation: sourceLocation)
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        #expect(Swift.abs(a - e) <= tol * Swift.max(1, Swift.abs(e)), "\(what)[\(i)]: got \(a), expected \(e)",
                sourceLocation: sourceLocation)
    }
}

// MARK: test-only modules

final class Block: Module {
    let proj_in: Linear
    let norm: GroupNorm
    init(_ dim: Int) throws {
        proj_in = try Linear(dim, dim)
        norm = try GroupNorm(numGroups: 2, numChannels: dim)
    }
}

final class Net: Module {
    let conv_in: Conv2d
    let blocks: [Block]
    let extra: Linear?
    let absent: Linear?        // nil: contributes no keys
    let head: Sequential
    let bn: BatchNorm2d
    let scale: Tensor          // a direct parameter
    let cache: [Tensor]        // ignored by reflection
    let depth = 2              // ignored
    init(width: Int = 4) throws {
        conv_in = try Conv2d(3, 4, kernelSize: 3, padding: 1)
        blocks = [try Block(4), try Block(4)]
        extra = try Linear(4, 2, bias: false)
        absent = nil
        head = Sequential([try Linear(4, 8), Identity(), try Linear(8, 4)])
        bn = try BatchNorm2d(4)
        scale = try makeParameter([1], .ones)
        cache = [try Tensor.zeros([2])]
    }
}

private let expectedParameterKeys = [
    "conv_in.weight", "conv_in.bias",
    "blocks.0.proj_in.weight", "blocks.0.proj_in.bias", "blocks.0.norm.weight", "blocks.0.norm.bias",
    "blocks.1.proj_in.weight", "blocks.1.proj_in.bias", "blocks.1.norm.weight", "blocks.1.norm.bias",
    "extra.weight",
    "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias",
    "bn.weight", "bn.bias",
    "scale",
]

private let expectedStateKeys = [
    "conv_in.weight", "conv_in.bias",
    "blocks.0.proj_in.weight", "blocks.0.proj_in.bias", "blocks.0.norm.weight", "blocks.0.norm.bias",
    "blocks.1.proj_in.weight", "blocks.1.proj_in.bias", "blocks.1.norm.weight", "blocks.1.norm.bias",
    "extra.weight",
    "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias",
    "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
    "scale",
]

/// A copy of the net's state dict with every tensor replaced by a fresh one of the same shape and dtype.
private func freshStateDict(_ net: Module, fill: Double = 0.25) throws -> [String: Tensor] {
    var d: [String: Tensor] = [:]
    for (k, t) in net.stateDict() { d[k] = try Tensor.full(t.shape, fill, dtype: t.dtype) }
    return d
}

@Suite("NN modules")
struct ModuleTests {
    @Test func keyPathsFollowPyTorchNamingInOrder() throws {
        let net = try Net()
        #expect(net.namedParameters().map(\.0) == expectedParameterKeys)
        #expect(net.stateDict().map(\.0) == expectedStateKeys)
        #expect(net.namedBuffers().map(\.0) == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"])
        #expect(net.namedModules().map(\.0) == [
            "", "conv_in", "blocks.0", "blocks.0.proj_in", "blocks.0.norm", "blocks.1", "blocks.1.proj_in",
            "blocks.1.norm", "extra", "head", "head.0", "head.1", "head.2", "bn",
        ])
        #expect(net.namedChildren().map(\.0) == ["conv_in", "blocks.0", "blocks.1", "extra", "head", "bn"])
        // Shapes as PyTorch has them.
        let shapes = Dictionary(uniqueKeysWithValues: net.stateDict().map { ($0.0, $0.1.shape) })
        #expect(shapes["conv_in.weight"] == [4, 3, 3, 3])
        #expect(shapes["extra.weight"] == [2, 4])
        #expect(shapes["head.0.weight"] == [8, 4])
        #expect(shapes["bn.num_batches_tracked"] == [])
        #expect(net.parameterCount == 4 * 27 + 4 + 2 * (16 + 4 + 4 + 4) + 8 + (32 + 8) + (32 + 4) + 8 + 1)
        // Parameters require grad; buffers do not.
        #expect(net.parameters().allSatisfy { $0.requiresGrad })
        #expect(net.namedBuffers().allSatisfy { !$0.1.requiresGrad })
    }

    @Test func strictLoadReportsEveryProblemAtOnce() throws {
        let net = try Net()
        let before = try dbl((net.head.layers[0] as! Linear).weight)
        var sd = try freshStateDict(net)
        let missing = ["blocks.1.norm.bias", "bn.running_var", "scale"]
        for k in missing { sd[k] = nil }
        let unexpected = ["blocks.2.proj_in.weight", "head.1.weight", "foo"]
        for k in unexpected { sd[k] = try Tensor.zeros([1]) }
        let mismatched = ["conv_in.weight", "extra.weight"]
        sd["conv_in.weight"] = try Tensor.zeros([4, 3, 1, 1])
        sd["extra.weight"] = try Tensor.zeros([4, 2])

        let e = try #require(throws: StateDictError.self) { try net.load(stateDict: sd) }
        #expect(Set(e.report.missing) == Set(missing))
        #expect(Set(e.report.unexpected) == Set(unexpected))
        #expect(Set(e.report.mismatched.map(\.key)) == Set(mismatched))
        let conv = try #require(e.report.mismatched.first { $0.key == "conv_in.weight" })
        #expect(conv.expected == [4, 3, 3, 3] && conv.found == [4, 3, 1, 1])
        let text = e.description
        for k in missing + unexpected + mismatched { #expect(text.contains(k), "\(k) not in: \(text)") }
        #expect(text.contains("Net"))
        // Nothing was loaded by the failed call.
        #expect(try dbl((net.head.layers[0] as! Linear).weight) == before)

        // allowMissing globs silence the missing keys they match, and only those.
        let e2 = try #require(throws: StateDictError.self) {
            try net.load(stateDict: sd, allowMissing: ["bn.*", "scale"])
        }
        #expect(e2.report.missing == ["blocks.1.norm.bias"])
        #expect(Set(e2.report.unexpected) == Set(unexpected))

        // With only allowed-missing keys a strict load succeeds and copies the rest.
        var ok = try freshStateDict(net, fill: 0.5)
        ok["bn.running_var"] = nil
        ok["blocks.1.norm.bias"] = nil
        let report = try net.load(stateDict: ok, allowMissing: ["bn.running_*", "blocks.?.norm.bias"])
        #expect(report.loaded == expectedStateKeys.count - 2)
        #expect(report.missing.isEmpty && report.unexpected.isEmpty && report.mismatched.isEmpty)
        #expect(try dbl(net.conv_in.weight).allSatisfy { $0 == 0.5 })
        #expect(try dbl(net.bn.running_var).allSatisfy { $0 == 1 })  // left alone
        #expect(try net.bn.num_batches_tracked.itemInt() == 0)
        // ignoreUnexpected globs drop unexpected keys.
        ok["something.else"] = try Tensor.zeros([3])
        #expect(throws: StateDictError.self) { try net.load(stateDict: ok, allowMissing: ["*"]) }
        try net.load(stateDict: ok, allowMissing: ["*"], ignoreUnexpected: ["something.*"])
    }

    @Test func nonStrictLoadSkipsMissingButRefusesShapeMismatch() throws {
        let net = try Net()
        let convIdentity = net.conv_in.weight
        var sd = try freshStateDict(net, fill: -1)
        sd["scale"] = nil
        sd["unknown.key"] = try Tensor.zeros([2])
        let scaleBefore = try dbl(net.scale)
        let report = try net.load(stateDict: sd, strict: false)
        #expect(report.missing == ["scale"])
        #expect(report.unexpected == ["unknown.key"])
        #expect(report.loaded == expectedStateKeys.count - 1)
        #expect(try dbl(net.conv_in.weight).allSatisfy { $0 == -1 })
        #expect(try dbl(net.scale) == scaleBefore)
        #expect(net.conv_in.weight === convIdentity)  // copied into, not replaced
        #expect(net.conv_in.weight.requiresGrad)
        // A shape mismatch is an error even when not strict.
        sd["head.2.bias"] = try Tensor.zeros([5])
        let e = try #require(throws: StateDictError.self) { try net.load(stateDict: sd, strict: false) }
        #expect(e.report.mismatched.map(\.key) == ["head.2.bias"])
        #expect(e.description.contains("head.2.bias"))
        // Loading converts dtype into the module's own.
        var d64 = try freshStateDict(net, fill: 2)
        d64["extra.weight"] = try Tensor.full([2, 4], 3, dtype: .float64)
        try net.load(stateDict: d64)
        #expect(net.extra!.weight.dtype == .float32)
        #expect(try dbl(net.extra!.weight).allSatisfy { $0 == 3 })
    }

    @Test func freezeAndUnfreezeByGlob() throws {
        let net = try Net()
        let frozen = try net.freeze(["blocks.*"])
        #expect(frozen == expectedParameterKeys.filter { $0.hasPrefix("blocks.") })
        for (k, t) in net.namedParameters() { #expect(t.requiresGrad == !k.hasPrefix("blocks."), "\(k)") }
        let thawed = try net.unfreeze(["blocks.1.*"])
        #expect(thawed == ["blocks.1.proj_in.weight", "blocks.1.proj_in.bias", "blocks.1.norm.weight", "blocks.1.norm.bias"])
        #expect(Set(net.trainableParameters().map(\.0)) == Set(expectedParameterKeys.filter { !$0.hasPrefix("blocks.0.") }))
        try net.freeze(["*.bias"])
        #expect(net.trainableParameters().map(\.0).allSatisfy { !$0.hasSuffix(".bias") })
        #expect(net.trainableParameters().contains { $0.0 == "conv_in.weight" })
        try net.freeze()
        #expect(net.trainableParameters().isEmpty)
        try net.unfreeze()
        #expect(net.trainableParameters().count == expectedParameterKeys.count)
        // Frozen parameters get no gradient.
        let lin = try Linear(2, 1)
        try lin.freeze(["weight"])
        try lin(try Tensor([Float(1), 2], shape: [1, 2])).sum().backward()
        #expect(lin.weight.grad == nil)
        #expect(try dbl(try #require(lin.bias?.grad)) == [1])
        #expect(Glob.matches("down_blocks.0.resnets.1.conv1.weight", "down_blocks.*.conv?.weight"))
        #expect(!Glob.matches("up.weight", "down*"))
    }

    @Test func trainEvalPropagates() throws {
        let net = try Net()
        #expect(net.namedModules().allSatisfy { $0.1.training })
        net.eval()
        #expect(net.namedModules().allSatisfy { !$0.1.training })
        net.train()
        #expect(net.namedModules().allSatisfy { $0.1.training })
        net.blocks[1].eval()  // only the subtree
        for (k, m) in net.namedModules() { #expect(m.training == !k.hasPrefix("blocks.1"), "\(k)") }
        // Dropout: identity in eval, zeros and 1/(1−p) scaling in training.
        let drop = Dropout(0.5)
        let x = try Tensor.ones([1000])
        drop.eval()
        #expect(try dbl(drop(x)).allSatisfy { $0 == 1 })
        drop.train()
        let y = try dbl(drop(x))
        #expect(y.allSatisfy { $0 == 0 || $0 == 2 })
        #expect(y.contains(0) && y.contains(2))
    }

    @Test func castingToFloat64KeepsIdentitySoAnOptimizerStillSteps() throws {
        let net = try Net()
        let lin = net.head.layers[2] as! Linear
        let weight = lin.weight
        let opt = try AdamW(params: lin.parameters(), lr: 0.1, weightDecay: 0)
        try net.to(dtype: .float64)
        #expect(lin.weight === weight)
        #expect(net.parameters().allSatisfy { $0.dtype == .float64 })
        #expect(net.bn.running_mean.dtype == .float64)
        #expect(net.bn.num_batches_tracked.dtype == .int64)  // integers are not cast
        #expect(weight.requiresGrad && weight.isLeaf)
        let w0 = try dbl(weight), b0 = try dbl(try #require(lin.bias))
        // Forward/backward in float64: x = ones(3, 8) → ∂Σy/∂W = 3 everywhere, ∂/∂b = 3.
        try lin(try Tensor.ones([3, 8], dtype: .float64)).sum().backward()
        #expect(try #require(weight.grad).dtype == .float64)
        try opt.step()
        // AdamW's first step with wd 0 moves every element by lr in the direction −sign(g).
        expectClose(try dbl(weight), w0.map { $0 - 0.1 }, tol: 1e-7, "weight")
        expectClose(try dbl(try #require(lin.bias)), b0.map { $0 - 0.1 }, tol: 1e-7, "bias")
        #expect(try opt.state(of: 0)?.expAvg.dtype == .float64)
        // And back to float32.
        try net.to(dtype: .float32)
        #expect(lin.weight === weight && weight.dtype == .float32)
    }

    @Test func batchNorm2dTrainModeUpdatesRunningStats() throws {
        let bn = try BatchNorm2d(2)
        // (N=2, C=2, H=1, W=2): channel 0 = [1, 2, 3, 4], channel 1 = [2, 2, 6, 6].
        let x = try Tensor([Float(1), 2, 2, 2, 3, 4, 6, 6], shape: [2, 2, 1, 2])
        let y = try bn(x)
        // Running stats use the unbiased variance: ch0 5/3, ch1 16/3; momentum 0.1.
        expectClose(try dbl(bn.running_mean), [0.25, 0.4], tol: 1e-6, "running mean")
        expectClose(try dbl(bn.running_var), [0.9 + 0.1 * 5 / 3, 0.9 + 0.1 * 16 / 3], tol: 1e-6, "running var")
        #expect(try bn.num_batches_tracked.itemInt() == 1)
        // The output uses the batch statistics with the biased variance (ch0 1.25, ch1 4).
        let s0 = 1 / (1.25 + 1e-5).squareRoot(), s1 = 1 / (4 + 1e-5).squareRoot()
        expectClose(try dbl(y), [-1.5 * s0, -0.5 * s0, -2 * s1, -2 * s1, 0.5 * s0, 1.5 * s0, 2 * s1, 2 * s1],
                    tol: 1e-5, "train output")
        _ = try bn(x)
        expectClose(try dbl(bn.running_mean), [0.9 * 0.25 + 0.25, 0.9 * 0.4 + 0.4], tol: 1e-6, "second update")
        #expect(try bn.num_batches_tracked.itemInt() == 2)
        // Eval mode normalises with the running statistics and leaves them alone.
        bn.eval()
        let rm = try dbl(bn.running_mean), rv = try dbl(bn.running_var)
        let z = try bn(x)
        #expect(try dbl(bn.running_mean) == rm)
        #expect(try bn.num_batches_tracked.itemInt() == 2)
        let xs: [Double] = [1, 2, 2, 2, 3, 4, 6, 6]
        let expected = xs.enumerated().map { i, v in
            let c = (i / 2) % 2
            return (v - rm[c]) / (rv[c] + 1e-5).squareRoot()
        }
        expectClose(try dbl(z), expected, tol: 1e-5, "eval output")
    }

    @Test func pytorchModuleStateDictLoadsStrictly() throws {
        // Tests/TorchTests/Resources/module_state_dict.pth is torch.save(nn.Sequential(Linear(2, 3),
        // BatchNorm1d(3)).state_dict()) with known values (see gen_pth.py there).
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TorchTests/Resources/module_state_dict.pth").path
        let seq = Sequential([try Linear(2, 3), try BatchNorm2d(3)])
        try seq.load(stateDict: Dictionary(uniqueKeysWithValues: try Pth.load(path: path)))
        let lin = seq.layers[0] as! Linear, bn = seq.layers[1] as! BatchNorm2d
        #expect(try dbl(lin.weight) == [0, 0.25, 0.5, 0.75, 1, 1.25])
        #expect(try dbl(bn.running_mean) == [0.5, 1.5, 2.5])
        #expect(try bn.num_batches_tracked.itemInt() == 7)
        expectClose(try dbl(lin(try Tensor([Float(1), 2], shape: [1, 2]))), [-0.5, 2, 4.5], tol: 1e-6, "forward")
    }

    @Test func layerForwardValues() throws {
        // Load known weights and compare with hand-computed outputs.
        let lin = try Linear(3, 2)
        try lin.load(stateDict: ["weight": try Tensor([Float(1), 0, -1, 2, 1, 0], shape: [2, 3]),
                                 "bias": try Tensor([Float(0.5), -1])])
        expectClose(try dbl(lin(try Tensor([Float(1), 2, 3], shape: [1, 3]))), [-1.5, 3], tol: 1e-6, "linear")

        // 1x1 conv mixing two channels, and a 3x3 box filter with zero padding.
        let conv = try Conv2d(2, 1, kernelSize: 1, bias: false)
        try conv.load(stateDict: ["weight": try Tensor([Float(2), -1], shape: [1, 2, 1, 1])])
        let cx = try Tensor([Float(1), 2, 3, 4, 1, 1, 1, 1], shape: [1, 2, 2, 2])
        expectClose(try dbl(conv(cx)), [1, 3, 5, 7], tol: 1e-6, "1x1 conv")
        let box = try Conv2d(1, 1, kernelSize: 3, padding: 1)
        try box.load(stateDict: ["weight": try Tensor.ones([1, 1, 3, 3]), "bias": try Tensor([Float(10)])])
        expectClose(try dbl(box(try Tensor([Float(1), 2, 3, 4], shape: [1, 1, 2, 2]))), [20, 20, 20, 20], tol: 1e-6, "box")

        let ln = try LayerNorm(4)
        let lx = try Tensor([Float(1), 2, 3, 4], shape: [1, 4])
        let sd = (1.25 + 1e-5).squareRoot()
        expectClose(try dbl(ln(lx)), [-1.5 / sd, -0.5 / sd, 0.5 / sd, 1.5 / sd], tol: 1e-5, "layer norm")

        let gn = try GroupNorm(numGroups: 2, numChannels: 4, eps: 0)
        expectClose(try dbl(gn(try Tensor([Float(1), 3, 2, 6], shape: [1, 4, 1, 1]))), [-1, 1, -1, 1], tol: 1e-6, "group norm")

        let emb = try Embedding(3, 2)
        try emb.load(stateDict: ["weight": try Tensor([Float(0), 1, 10, 11, 20, 21], shape: [3, 2])])
        expectClose(try dbl(emb(try Tensor([Int64(2), 0, 2]))), [20, 21, 0, 1, 20, 21], tol: 0, "embedding")

        let seq = Sequential([lin, Identity()])
        #expect(seq.stateDict().map(\.0) == ["0.weight", "0.bias"])
        expectClose(try dbl(seq(try Tensor([Float(1), 2, 3], shape: [1, 3]))), [-1.5, 3], tol: 1e-6, "sequential")
    }
}
