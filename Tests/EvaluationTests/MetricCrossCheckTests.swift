// MetricCrossCheckTests.swift — L1, PSNR, SSIM and tLP on real frames (../shared/media) against
// independent implementations run in the test venv ($PERSONALIVE_PYTHON): scikit-image's
// structural_similarity / peak_signal_noise_ratio, NumPy for L1, and for LPIPS and tLP an LPIPS
// written here in PyTorch (VGG16 or AlexNet taps, channel normalisation, 1×1 heads, spatial mean, as
// the lpips package) loading the same weights, combined as TecoGAN does. Tolerance 1e-4. A missing Python fails.
import Foundation
import Testing
import Media
import Models
import NN
import Torch
@testable import Evaluation

enum EvalPaths {
    static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
    static var media: String? {
        let env = ProcessInfo.processInfo.environment["PERSONALIVE_MEDIA"]
        return [env, packageRoot + "/../shared/media", "/work/shared/media"].compactMap { $0 }
            .first { FileManager.default.fileExists(atPath: $0 + "/README.md") }
    }
    static var python: String? {
        let p = ProcessInfo.processInfo.environment["PERSONALIVE_PYTHON"] ?? packageRoot + "/.venv/bin/python"
        return FileManager.default.isExecutableFile(atPath: p) ? p : nil
    }
    static func scratch() throws -> URL {
        let u = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("evtest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }
    @discardableResult
    static func run(_ exe: String, _ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Frames of a real clip, (n, 3, size, size) in [0, 1] (every `step`-th frame, resized).
func realFrames(_ name: String, count: Int, step: Int, size: Int) throws -> Tensor {
    let media = try #require(EvalPaths.media, "shared media folder not found")
    let all = try VideoReader(path: media + "/" + name).readAll(maxFrames: count * step)
    let picked = stride(from: 0, to: all.count, by: step).prefix(count).map { all[$0] }
    return try Tensor.stack(picked.map { try $0.resized(width: size, height: size, filter: .bicubic).tensorCHW(.unit) }, dim: 0)
}

func writeRaw(_ t: Tensor, _ path: String) throws {
    let v = try t.to(.float64).contiguous().toArray(Double.self)
    try v.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
}

@Suite struct MetricCrossCheckTests {
    @Test func psnrSsimL1MatchScikitImage() throws {
        let python = try #require(EvalPaths.python, "no Python at $PERSONALIVE_PYTHON or .venv/bin/python (make venv)")
        let dir = try EvalPaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Generated-like vs ground-truth-like: two real clips, plus a pair that differs by little (d0 one frame apart).
        let a = try Tensor.cat([realFrames("liveportrait/d0.mp4", count: 3, step: 9, size: 96),
                                realFrames("liveportrait/d0.mp4", count: 1, step: 1, size: 96)], dim: 0)
        let b = try Tensor.cat([realFrames("liveportrait/d11.mp4", count: 3, step: 9, size: 96),
                                realFrames("liveportrait/d0.mp4", count: 2, step: 1, size: 96).narrow(0, start: 1, length: 1)], dim: 0)
        try writeRaw(a, dir.appendingPathComponent("a.bin").path)
        try writeRaw(b, dir.appendingPathComponent("b.bin").path)
        let script = """
            import json, sys, numpy as np
            from skimage.metrics import structural_similarity, peak_signal_noise_ratio
            d = sys.argv[1]
            a = np.fromfile(d + '/a.bin', dtype='<f8').reshape(4, 3, 96, 96)
            b = np.fromfile(d + '/b.bin', dtype='<f8').reshape(4, 3, 96, 96)
            out = {'l1': [], 'psnr': [], 'ssim': []}
            for x, y in zip(a, b):
                out['l1'].append(float(np.abs(x - y).mean()))
                out['psnr'].append(float(peak_signal_noise_ratio(y, x, data_range=1)))
                out['ssim'].append(float(structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                    use_sample_covariance=False, data_range=1, channel_axis=0)))
            print(json.dumps(out))
            """
        let (status, text) = try EvalPaths.run(python, ["-c", script, dir.path])
        try #require(status == 0, "python failed: \(text)")
        let ref = try #require(try JSONSerialization.jsonObject(with: Data(text.split(separator: "\n").last!.utf8)) as? [String: [Double]])
        let ours = ["l1": try ImageMetrics.l1(a, b), "psnr": try ImageMetrics.psnr(a, b), "ssim": try ImageMetrics.ssim(a, b)]
        for key in ["l1", "psnr", "ssim"] {
            let r = try #require(ref[key]), o = try #require(ours[key])
            #expect(r.count == 4 && o.count == 4)
            for (x, y) in zip(o, r) { #expect(abs(x - y) < 1e-4, "\(key): ours \(x), scikit-image/NumPy \(y)") }
        }
        // The pairs really differ in kind: distinct clips score low, neighbouring frames high.
        #expect(ours["ssim"]![3] > 0.8 && ours["ssim"]![0] < 0.6, "\(ours["ssim"]!)")
    }

    @Test(arguments: [LPIPS.Network.vgg, .alex])
    func temporalLPIPSMatchesIndependentPyTorch(network: LPIPS.Network) throws {
        let python = try #require(EvalPaths.python, "no Python at $PERSONALIVE_PYTHON or .venv/bin/python (make venv)")
        let dir = try EvalPaths.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Random weights from a seeded generator of our own (tests run concurrently, so the global one
        // is shared), PyTorch's default uniform bounds; both implementations read the same file.
        let lpips = try LPIPS(network: network)
        let generator = try Generator(seed: 20261202)
        for (_, p) in lpips.namedParameters() {
            let fanIn = p.shape.count > 1 ? p.shape.dropFirst().reduce(1, *) : p.shape[0]
            try p.uniform_(-1 / Double(fanIn).squareRoot(), 1 / Double(fanIn).squareRoot(), generator: generator)
        }
        // Positive head weights, as trained LPIPS heads are (lpips clamps them to ≥ 0).
        for lin in lpips.lins { try lin.weight.copy_(lin.weight.abs()) }
        let weights = dir.appendingPathComponent("lpips.safetensors").path
        try SafeTensors.write(lpips.stateDict(), to: weights)
        let metric = PerceptualMetric(lpips: try LPIPS(weights: [weights], network: network), name: weights)
        // Frames far apart against neighbouring frames: the clips' frame-to-frame distances differ
        // clearly, so tLP is not near zero whatever the random weights.
        let g = try realFrames("liveportrait/d0.mp4", count: 4, step: 8, size: 64)
        let y = try realFrames("liveportrait/d11.mp4", count: 4, step: 1, size: 64)
        try writeRaw(g, dir.appendingPathComponent("g.bin").path)
        try writeRaw(y, dir.appendingPathComponent("y.bin").path)
        // torchvision's feature stacks: ('C', out, kernel, stride, padding), 'R' ReLU, ('M', kernel, stride);
        // LPIPS taps after the listed layer indices.
        let script = """
            import json, sys, numpy as np, torch
            import torch.nn.functional as F
            from safetensors.torch import load_file
            d, net = sys.argv[1], sys.argv[2]
            w = load_file(d + '/lpips.safetensors')
            if net == 'vgg':
                layers, taps = [], {3, 8, 15, 22, 29}
                for c in [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512]:
                    layers += [('M', 2, 2)] if c == 'M' else [('C', 3, 1, 1), ('R',)]
            else:
                layers = [('C', 11, 4, 2), ('R',), ('M', 3, 2), ('C', 5, 1, 2), ('R',), ('M', 3, 2),
                          ('C', 3, 1, 1), ('R',), ('C', 3, 1, 1), ('R',), ('C', 3, 1, 1), ('R',)]
                taps = {1, 4, 7, 9, 11}
            def feats(x):
                out = []
                for i, l in enumerate(layers):
                    if l[0] == 'C':
                        s = [k for k in range(1, 6) if f'net.slice{k}.{i}.weight' in w][0]
                        x = F.conv2d(x, w[f'net.slice{s}.{i}.weight'], w[f'net.slice{s}.{i}.bias'], stride=l[2], padding=l[3])
                    elif l[0] == 'R':
                        x = torch.relu(x)
                    else:
                        x = F.max_pool2d(x, l[1], l[2])
                    if i in taps: out.append(x)
                return out
            def lp(a, b):
                shift = torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1); scale = torch.tensor([.458, .448, .450]).view(1, 3, 1, 1)
                fa, fb = feats(((a * 2 - 1) - shift) / scale), feats(((b * 2 - 1) - shift) / scale)
                n = lambda t: t / (t.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                return sum(F.conv2d((n(p) - n(q)) ** 2, w[f'lin{k}.model.1.weight']).mean([2, 3])
                           for k, (p, q) in enumerate(zip(fa, fb))).flatten()
            g = torch.from_numpy(np.fromfile(d + '/g.bin', dtype='<f8').reshape(4, 3, 64, 64)).float()
            y = torch.from_numpy(np.fromfile(d + '/y.bin', dtype='<f8').reshape(4, 3, 64, 64)).float()
            with torch.no_grad():
                dg, dy = lp(g[:-1], g[1:]), lp(y[:-1], y[1:])
                print(json.dumps({'tlp': (dg - dy).abs().double().tolist(), 'lpips': lp(g, y).double().tolist()}))
            """
        let (status, text) = try EvalPaths.run(python, ["-c", script, dir.path, network.rawValue])
        try #require(status == 0, "python failed: \(text)")
        let ref = try #require(try JSONSerialization.jsonObject(with: Data(text.split(separator: "\n").last!.utf8)) as? [String: [Double]])
        let tlp = try metric.temporal(generated: g, truth: y), lp = try metric.distances(g, y)
        let rt = try #require(ref["tlp"]), rl = try #require(ref["lpips"])
        #expect(tlp.count == 3 && rt.count == 3 && lp.count == 4 && rl.count == 4)
        for (o, r) in zip(tlp, rt) { #expect(abs(o - r) < 1e-4 * max(1, abs(r)), "\(network) tLP ours \(o), PyTorch \(r)") }
        for (o, r) in zip(lp, rl) { #expect(abs(o - r) < 1e-4 * max(1, abs(r)), "\(network) LPIPS ours \(o), PyTorch \(r)") }
        // Not trivially zero: random-weight LPIPS distances are small (~0.03), so compare with them.
        let scale = lp.reduce(0, +) / Double(lp.count)
        #expect(tlp.contains { $0 > 0.01 * scale }, "tLP is trivially zero: \(tlp) against LPIPS \(lp)")
    }

    @Test func ssimOfIdenticalImagesIsOneAndPSNRInfinite() throws {
        let a = try realFrames("liveportrait/d0.mp4", count: 1, step: 1, size: 32)
        #expect(try abs(ImageMetrics.ssim(a, a)[0] - 1) < 1e-12)
        #expect(try ImageMetrics.psnr(a, a)[0] == .infinity)
        #expect(throws: EvaluationError.self) { try ImageMetrics.ssim(a.narrow(2, start: 0, length: 8), a.narrow(2, start: 0, length: 8)) }
        #expect(throws: EvaluationError.self) { try ImageMetrics.l1(a, a.narrow(2, start: 0, length: 8)) }
    }
}
