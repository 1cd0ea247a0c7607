// GroupNormChannelsLastTests.swift — F.groupNorm on an input whose strides look channels-last, that
// takes no gradient, with a weight that does (a frozen UNet feeding trainable temporal modules in
// stage 3): LibTorch's CPU backward crashed there (null dX in its channels-last kernel; also in
// PyTorch 2.13). The weight's gradient must come out, equal to the contiguous input's.
import Foundation
import Testing
@testable import Torch

@Suite struct GroupNormChannelsLastTests {
    @Test func frozenChannelsLastInputWithTrainableWeight() throws {
        try Torch.withGradEnabled(true) {
            let g = try Generator(seed: 3)
            let dense = try Tensor.randn([4, 8, 5, 5], generator: g)
            // NCHW shape with NHWC strides.
            let cl = try dense.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
            #expect(!cl.isContiguous)
            func weightGrad(_ x: Tensor) throws -> Tensor {
                let w = try Tensor.ones([8]).requiresGrad_(true), b = try Tensor.zeros([8]).requiresGrad_(true)
                let y = try F.groupNorm(x, groups: 2, weight: w, bias: b, eps: 1e-5)
                try (y * y.detach().sin()).sum().backward()
                return try #require(w.grad)
            }
            let a = try weightGrad(cl), c = try weightGrad(dense)
            #expect(try a.maxAbsDiff(c) < 1e-5)
            #expect(try a.abs().sum().item() > 0)
        }
    }
}
