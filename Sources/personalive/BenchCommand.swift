// BenchCommand.swift — `personalive bench …`: timings printed with a baseline measured in the
// same run (never asserted; this machine is shared and noisy).
import ArgumentParser
import Foundation
import Torch

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks (print ratios against a baseline measured in the same run).",
        subcommands: [Ops.self, BenchUNetCommand.self, BenchDenoiserCommand.self, BenchLoaderCommand.self,
                      BenchTrainCommand.self, BenchStreamCommand.self, BenchServeCommand.self, BenchCompareCommand.self])

    struct Ops: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per-call overhead of a small op and matmul GFLOP/s (shows BLAS misconfiguration at once).")

        @Option(help: "Calls of the small op.") var calls: Int = 10_000
        @Option(help: "Matrix size for the matmul.") var size: Int = 512
        @OptionGroup var global: GlobalOptions

        func run() throws {
            _ = try global.setUp(label: "bench")
            print("LibTorch \(Torch.runtimeVersion) (headers \(Torch.headerVersion)), \(Torch.numThreads) threads")

            // Small op: tensor add of 8 elements vs. the same add on Swift arrays.
            let a = try Tensor.rand([8]), b = try Tensor.rand([8])
            for _ in 0..<100 { _ = try a + b }
            let tTorch = try time { for _ in 0..<calls { _ = try a + b } } / Double(calls)
            var xs = [Float](repeating: 1, count: 8), ys = [Float](repeating: 2, count: 8)
            let tSwift = try time {
                for i in 0..<calls {
                    var zs = [Float](repeating: 0, count: 8)
                    for j in 0..<8 { zs[j] = xs[j] + ys[j] }
                    xs[i % 8] = zs[(i + 1) % 8] * 0.5
                }
            } / Double(calls)
            ys[0] = xs[0]
            print(String(format: "add of 8 floats: %.2f µs/call (Swift array baseline %.3f µs, ratio %.0f×)",
                         tTorch * 1e6, tSwift * 1e6, tTorch / tSwift))

            // Matmul: LibTorch vs. a naive Swift triple loop at a size it finishes quickly.
            let n = size
            let m1 = try Tensor.rand([n, n]), m2 = try Tensor.rand([n, n])
            _ = try m1.matmul(m2)
            let reps = 10
            let tMM = try time { for _ in 0..<reps { _ = try m1.matmul(m2) } } / Double(reps)
            let gflops = 2 * pow(Double(n), 3) / tMM / 1e9
            let k = 128
            let p = [Float](repeating: 0.5, count: k * k), q = [Float](repeating: 0.25, count: k * k)
            var r = [Float](repeating: 0, count: k * k)
            let tNaive = try time {
                for i in 0..<k { for l in 0..<k { let pv = p[i * k + l]; for j in 0..<k { r[i * k + j] += pv * q[l * k + j] } } }
            }
            let naive = 2 * pow(Double(k), 3) / tNaive / 1e9
            print(String(format: "matmul %d²: %.1f GFLOP/s (naive Swift loop %d²: %.2f GFLOP/s, ratio %.0f×)",
                         n, gflops, k, naive, gflops / naive))
            if gflops < 10 {
                print("warning: matmul is slow; is OpenBLAS installed (libopenblas0-pthread)? The reference BLAS runs ~30× slower.")
            }
            _ = r[0]
        }
    }
}

/// Seconds taken by `body`.
func time(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}
