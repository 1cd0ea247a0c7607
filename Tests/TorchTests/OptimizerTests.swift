// OptimizerTests.swift — AdamW against the update rule computed by hand (two parameter groups),
// the fused kernel against the per-parameter loop, state export/import giving a bit-identical next
// step, and gradient-norm clipping.
import Foundation
import Testing
@testable import Torch

/// torch.optim.AdamW's update for one element, in Double, exactly as the rule is written:
///   p ← p·(1 − lr·wd);  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
///   p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)
private struct HandAdamW {
    var p: Double, m = 0.0, v = 0.0, t = 0
    let lr: Double, wd: Double, b1 = 0.9, b2 = 0.999, eps = 1e-8

    mutating func step(_ g: Double) {
        t += 1
        p *= 1 - lr * wd
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        let bc1 = 1 - Foundation.pow(b1, Double(t)), bc2 = 1 - Foundation.pow(b2, Double(t))
        p -= lr / bc1 * m / (v.squareRoot() / bc2.squareRoot() + eps)
    }
}

@Suite("AdamW and gradient clipping")
struct OptimizerTests {
    @Test func twoStepsWithTwoGroupsMatchTheUpdateRule() throws {
        let pA = try Tensor([1.0, -2.0]).requiresGrad_()
        let pB = try Tensor([0.5]).requiresGrad_()
        let opt = try AdamW(groups: [ParamGroup(params: [pA], lr: 0.1, weightDecay: 0.01),
                                     ParamGroup(params: [pB], lr: 0.01, weightDecay: 0.5)])
        #expect(opt.groupCount == 2)
        #expect(try opt.learningRate(group: 0) == 0.1)
        #expect(try opt.learningRate(group: 1) == 0.01)
        var handA = [HandAdamW(p: 1, lr: 0.1, wd: 0.01), HandAdamW(p: -2, lr: 0.1, wd: 0.01)]
        var handB = HandAdamW(p: 0.5, lr: 0.01, wd: 0.5)
        let gradsA: [[Double]] = [[0.5, -1.0], [-0.25, 3.0]]
        let gradsB: [Double] = [2.0, 0.1]
        for s in 0..<2 {
            try pA.setGrad(try Tensor(gradsA[s]))
            try pB.setGrad(try Tensor([gradsB[s]]))
            try opt.step()
            for i in 0..<2 { handA[i].step(gradsA[s][i]) }
            handB.step(gradsB[s])
            expectClose(try dbl(pA), handA.map(\.p), tol: 1e-12, "group A after step \(s + 1)")
            expectClose(try dbl(pB), [handB.p], tol: 1e-12, "group B after step \(s + 1)")
        }
        // The first step moves each element by ≈ lr (Adam's normalised step), so these are not
        // trivially equal to the start values.
        #expect(Swift.abs(try dbl(pA)[0] - 1) > 0.05)
        let st = try #require(try opt.state(of: 0))
        #expect(st.step == 2)
        expectClose(try dbl(st.expAvg), handA.map(\.m), tol: 1e-12, "exp_avg")
        expectClose(try dbl(st.expAvgSq), handA.map(\.v), tol: 1e-12, "exp_avg_sq")
        #expect(st.maxExpAvgSq == nil)

        // Learning rates can be changed per group; zeroGrad clears gradients.
        try opt.setLearningRate(0.5, group: 1)
        #expect(try opt.learningRate(group: 1) == 0.5)
        #expect(try opt.learningRate(group: 0) == 0.1)
        try opt.zeroGrad()
        #expect(pA.grad == nil && pB.grad == nil)
        try pA.setGrad(try Tensor([1.0, 1.0]))
        try opt.zeroGrad(setToNone: false)
        #expect(try dbl(try #require(pA.grad)) == [0, 0])
    }

    /// The fused kernel (where the LibTorch has one) and the per-parameter loop: the same update and
    /// state, over float32 parameters in two groups, a parameter that sits one step out without a
    /// gradient, and a state exported from one and imported into the other.
    @Test func fusedAndLoopStepsAgree() throws {
        let g = try Generator(seed: 11)
        let start = try [[4, 3], [7], [2, 2, 2]].map { try Tensor.randn($0, generator: g) }
        let grads = try (0..<3).map { _ in try start.map { try Tensor.randn($0.shape, generator: g) } }
        func run(fused: Bool) throws -> ([Tensor], [AdamWParamState?]) {
            let ps = try start.map { try $0.clone().requiresGrad_() }
            let opt = try AdamW(groups: [ParamGroup(params: Array(ps[0..<2]), lr: 0.05, weightDecay: 0.1),
                                         ParamGroup(params: [ps[2]], lr: 0.2, weightDecay: 0)], fused: fused)
            for (s, gs) in grads.enumerated() {
                for (p, gr) in zip(ps, gs) where !(s == 1 && p === ps[1]) { try p.setGrad(gr) }
                try opt.step()
                try opt.zeroGrad()
            }
            return (ps, try (0..<ps.count).map { try opt.state(of: $0) })
        }
        let (fusedParams, fusedState) = try run(fused: true)
        let (loopParams, loopState) = try run(fused: false)
        for i in 0..<start.count {
            #expect(try fusedParams[i].maxAbsDiff(loopParams[i]) < 1e-6, "parameter \(i)")
            #expect(try fusedParams[i].maxAbsDiff(start[i]) > 0.05, "parameter \(i) moved")
            let f = try #require(fusedState[i]), l = try #require(loopState[i])
            #expect(f.step == l.step && f.step == (i == 1 ? 2 : 3))
            #expect(try f.expAvg.maxAbsDiff(l.expAvg) < 1e-6 && f.expAvgSq.maxAbsDiff(l.expAvgSq) < 1e-6)
        }
    }

    @Test func stepFromBackwardUsesTheComputedGradient() throws {
        // loss = Σ (w·x)² with x = [1, 2] → ∂/∂w = 2(w·x)x; one AdamW step with wd 0 moves by lr·sign.
        let w = try Tensor([0.5, -1.0]).requiresGrad_()
        let opt = try AdamW(params: [w], lr: 0.01, weightDecay: 0)
        let loss = try (w * Tensor([1.0, 2.0])).sum().square()
        try loss.backward()
        #expect(try dbl(try #require(w.grad)) == [-3, -6])
        try opt.step()
        expectClose(try dbl(w), [0.51, -0.99], tol: 1e-9, "after one step")
    }

    @Test func exportImportGivesBitIdenticalNextStep() throws {
        let g = try Generator(seed: 3)
        let p = try Tensor.randn([3, 4], generator: g).requiresGrad_()
        let q = try Tensor.randn([5], generator: g).requiresGrad_()
        func makeOpt(_ p: Tensor, _ q: Tensor) throws -> AdamW {
            try AdamW(groups: [ParamGroup(params: [p], lr: 1e-2, weightDecay: 0.1),
                               ParamGroup(params: [q], lr: 3e-3, weightDecay: 0)])
        }
        let opt = try makeOpt(p, q)
        #expect(try opt.exportState().isEmpty)  // no state before the first step
        for _ in 0..<3 {
            try p.setGrad(try Tensor.randn([3, 4], generator: g))
            try q.setGrad(try Tensor.randn([5], generator: g))
            try opt.step()
        }
        let exported = try opt.exportState()
        #expect(Set(exported.map(\.0)) == ["0.exp_avg", "0.exp_avg_sq", "0.step", "1.exp_avg", "1.exp_avg_sq", "1.step"])
        let stepEntry = try #require(exported.first { $0.0 == "1.step" })
        #expect(try stepEntry.1.itemInt() == 3)

        // Resume: fresh parameters with the same values, a fresh optimizer, the imported state.
        let p2 = try p.detach().clone().requiresGrad_()
        let q2 = try q.detach().clone().requiresGrad_()
        let resumed = try makeOpt(p2, q2)
        try resumed.importState(Dictionary(uniqueKeysWithValues: exported))
        #expect(try resumed.state(of: 1)?.step == 3)
        // ... and one without the state, which must diverge.
        let p3 = try p.detach().clone().requiresGrad_()
        let q3 = try q.detach().clone().requiresGrad_()
        let fresh = try makeOpt(p3, q3)

        let gp = try Tensor.randn([3, 4], generator: g), gq = try Tensor.randn([5], generator: g)
        for (a, b, o) in [(p, q, opt), (p2, q2, resumed), (p3, q3, fresh)] {
            try a.setGrad(gp.clone())
            try b.setGrad(gq.clone())
            try o.step()
        }
        func bits(_ t: Tensor) throws -> [UInt32] { try t.toArray(Float.self).map(\.bitPattern) }
        #expect(try bits(p2) == bits(p))
        #expect(try bits(q2) == bits(q))
        #expect(try bits(resumed.state(of: 0)!.expAvgSq) == bits(opt.state(of: 0)!.expAvgSq))
        #expect(try p3.maxAbsDiff(p) > 1e-6)

        // A state of the wrong shape is refused with a message naming it.
        let bad: [String: Tensor] = ["0.step": try Tensor([Int64(1)], shape: []), "0.exp_avg": try Tensor.zeros([2]),
                                     "0.exp_avg_sq": try Tensor.zeros([2])]
        let e = try #require(throws: TorchError.self) { try fresh.importState(bad) }
        #expect(e.message.contains("exp_avg"))
        let incomplete: [String: Tensor] = ["0.step": try Tensor([Int64(1)], shape: [])]
        #expect(throws: TorchError.self) { try fresh.importState(incomplete) }
    }

    @Test func clipGradNormReturnsPreClipNormAndScales() throws {
        let a = try Tensor([0.0, 0.0]).requiresGrad_(), b = try Tensor([0.0]).requiresGrad_()
        try a.setGrad(try Tensor([3.0, 4.0]))
        try b.setGrad(try Tensor([12.0]))
        // ‖(3, 4, 12)‖ = 13; clipping to 6.5 halves every gradient (coefficient 6.5 / (13 + 1e-6)).
        let norm = try Autograd.clipGradNorm([a, b], maxNorm: 6.5)
        #expect(Swift.abs(norm - 13) < 1e-12)
        let c = 6.5 / (13 + 1e-6)
        expectClose(try dbl(try #require(a.grad)), [3 * c, 4 * c], tol: 1e-12, "a clipped")
        expectClose(try dbl(try #require(b.grad)), [12 * c], tol: 1e-12, "b clipped")
        // Below the threshold nothing changes, and the norm is of the current gradients.
        let norm2 = try Autograd.clipGradNorm([a, b], maxNorm: 100)
        #expect(Swift.abs(norm2 - 13 * c) < 1e-9)
        expectClose(try dbl(try #require(a.grad)), [3 * c, 4 * c], tol: 1e-12, "a unchanged")
        // L1 norm type: |3| + |4| + |12| after reset.
        try a.setGrad(try Tensor([3.0, -4.0]))
        try b.setGrad(try Tensor([12.0]))
        let n1 = try Autograd.clipGradNorm([a, b], maxNorm: 1000, normType: 1)
        #expect(Swift.abs(n1 - 19) < 1e-12)
        // A parameter without a gradient is skipped (the foreach path on LibTorch ≥ 2.1 too), and
        // gradients of two dtypes take the per-parameter path: the same norm and scaling either way.
        let none = try Tensor([5.0]).requiresGrad_()
        try a.setGrad(try Tensor([3.0, 4.0]))
        #expect(Swift.abs(try Autograd.clipGradNorm([a, none, b], maxNorm: 6.5) - 13) < 1e-12)
        expectClose(try dbl(try #require(b.grad)), [12 * c], tol: 1e-12, "b clipped beside a parameter without a gradient")
        let f = try Tensor([0.0]).to(.float32).requiresGrad_()
        try f.setGrad(try Tensor([12.0]).to(.float32))
        try a.setGrad(try Tensor([3.0, 4.0]))
        #expect(Swift.abs(try Autograd.clipGradNorm([a, f], maxNorm: 6.5) - 13) < 1e-6)
        expectClose(try dbl(try #require(a.grad)), [3 * c, 4 * c], tol: 1e-9, "a clipped beside a float32 gradient")
    }
}
