// ErrorAndPthTests.swift — C++ exceptions surface as Swift errors carrying LibTorch's message (and
// the process keeps working); PyTorch .pth import of a committed file made by torch.save
// (Resources/gen_pth.py), refusal of non-dict files, and Pth.save → Pth.load round trips.
import Foundation
import Testing
@testable import Torch

private let pthResources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Resources")

private func withTempDir<R>(_ body: (URL) throws -> R) throws -> R {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pth-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    return try body(dir)
}

@Suite("C++ errors")
struct CxxErrorTests {
    @Test func badMatmulThrowsLibTorchMessageAndProcessKeepsWorking() throws {
        let a = try Tensor.ones([2, 3]), b = try Tensor.ones([4, 5])
        let e = try #require(throws: TorchError.self) { try a.matmul(b) }
        #expect(e.message.contains("cannot be multiplied") || e.message.contains("mat1 and mat2"), "\(e.message)")
        #expect(e.message.contains("2x3") && e.message.contains("4x5"), "\(e.message)")
        #expect(e.description == e.message)
        // The next operations work and give correct values.
        let c = try a.matmul(try Tensor.ones([3, 5]))
        #expect(c.shape == [2, 5])
        #expect(try c.toArray(Float.self) == Array(repeating: 3, count: 10))
        #expect(try (a + 1).sum().item() == 12)
    }

    @Test func otherLibTorchErrorsCarryTheirOwnMessages() throws {
        let x = try Tensor.arange(6)
        let e1 = try #require(throws: TorchError.self) { try x.reshape([4]) }
        #expect(e1.message.contains("invalid for input of size 6"), "\(e1.message)")
        let e2 = try #require(throws: TorchError.self) { try x.transpose(0, 3) }
        #expect(e2.message.lowercased().contains("dimension out of range"), "\(e2.message)")
        let e3 = try #require(throws: TorchError.self) { try Tensor.cat([Tensor.ones([2, 2]), Tensor.ones([3, 3])], dim: 0) }
        #expect(e3.message.contains("Sizes of tensors must match"), "\(e3.message)")
        // An error from one call does not leak into the message of the next failure.
        #expect(!e3.message.contains("invalid for input of size"))
    }

    @Test func errorsOnManyThreadsKeepTheirOwnMessages() async throws {
        let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for i in 0..<16 {
                group.addTask {
                    let t = try Tensor.ones([i + 1])
                    do {
                        _ = try t.reshape([i + 100])
                        return (i, "no error")
                    } catch let e as TorchError {
                        return (i, e.message)
                    }
                }
            }
            var out: [(Int, String)] = []
            for try await r in group { out.append(r) }
            return out
        }
        #expect(results.count == 16)
        for (i, msg) in results {
            #expect(msg.contains("shape '[\(i + 100)]' is invalid for input of size \(i + 1)"), "\(msg)")
        }
    }
}

@Suite("PyTorch .pth files")
struct PthTests {
    @Test func loadsCommittedFileAndUnwrapsStateDict() throws {
        let path = pthResources.appendingPathComponent("small_state_dict.pth").path
        let entries = try Pth.load(path: path)
        #expect(entries.map(\.0).sorted() == ["a.bias", "a.weight", "b.0.weight"])
        let d = Dictionary(uniqueKeysWithValues: entries)
        let w = try #require(d["a.weight"]), b = try #require(d["a.bias"]), i = try #require(d["b.0.weight"])
        #expect(w.dtype == .float32 && w.shape == [2, 3])
        #expect(try w.toArray(Float.self) == [1, -2, 3, 0.5, 0.25, -0.125])
        #expect(b.dtype == .float32 && b.shape == [2])
        #expect(try b.toArray(Float.self) == [0, -1.5])
        #expect(i.dtype == .int64 && i.shape == [4])
        #expect(try i.toArray(Int64.self) == [1, 2, -3, 1 << 40])
    }

    @Test func loadsModuleStateDictsSavedAsOrderedDicts() throws {
        // torch.save(module.state_dict()): an OrderedDict with `_metadata`, keys in module order.
        let entries = try Pth.load(path: pthResources.appendingPathComponent("module_state_dict.pth").path)
        let keys = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"]
        #expect(entries.map(\.0) == keys)
        let d = Dictionary(uniqueKeysWithValues: entries)
        #expect(try d["0.weight"]!.toArray(Float.self) == [0, 0.25, 0.5, 0.75, 1, 1.25])
        #expect(d["0.weight"]!.shape == [3, 2])
        #expect(try d["0.bias"]!.toArray(Float.self) == [-1, 0, 1])
        #expect(try d["1.running_var"]!.toArray(Float.self) == [1, 2, 3])
        let nbt = try #require(d["1.num_batches_tracked"])
        #expect(nbt.dtype == .int64 && nbt.shape == [])
        #expect(try nbt.itemInt() == 7)

        // Two state dicts in one file (the second reuses memoized strings of the first).
        let both = Dictionary(uniqueKeysWithValues: try Pth.load(path: pthResources.appendingPathComponent("two_modules.pth").path))
        #expect(Set(both.keys) == Set(keys.map { "model." + $0 } + keys.map { "ema." + $0 }))
        #expect(try both["model.0.bias"]!.toArray(Float.self) == [-1, 0, 1])
        #expect(try both["ema.0.bias"]!.toArray(Float.self) == [9, 10, 11])
        #expect(try both["ema.0.weight"]!.toArray(Float.self) == [10, 10.25, 10.5, 10.75, 11, 11.25])
        #expect(try both["ema.1.num_batches_tracked"]!.itemInt() == 7)
    }

    @Test func refusesFilesThatAreNotTensorDicts() throws {
        let list = pthResources.appendingPathComponent("not_a_dict.pth").path
        let e = try #require(throws: TorchError.self) { try Pth.load(path: list) }
        #expect(e.message.contains("not_a_dict.pth") && e.message.contains("not a PyTorch state dict"), "\(e.message)")
        #expect(e.message.contains("only dicts of tensors"), "\(e.message)")
        let missing = try #require(throws: TorchError.self) { try Pth.load(path: "/nonexistent/x.pth") }
        #expect(missing.message.contains("no such file"))
        try withTempDir { dir in
            let junk = dir.appendingPathComponent("junk.pth")
            try Data("this is not a zip or a pickle".utf8).write(to: junk)
            #expect(throws: TorchError.self) { try Pth.load(path: junk.path) }
            let empty = dir.appendingPathComponent("empty.pth")
            try Data().write(to: empty)
            #expect(throws: TorchError.self) { try Pth.load(path: empty.path) }
            // A truncated copy of the real file.
            let real = try Data(contentsOf: pthResources.appendingPathComponent("small_state_dict.pth"))
            let cut = dir.appendingPathComponent("cut.pth")
            try real.prefix(real.count / 2).write(to: cut)
            #expect(throws: TorchError.self) { try Pth.load(path: cut.path) }
        }
    }

    @Test func saveThenLoadRoundTrips() throws {
        try withTempDir { dir in
            let path = dir.appendingPathComponent("out.pth").path
            let g = try Generator(seed: 21)
            let tensors: [(String, Tensor)] = [
                ("enc.conv.weight", try Tensor.randn([2, 3, 3, 3], generator: g)),
                ("enc.conv.bias", try Tensor([Float(0.5), -1])),
                ("steps", try Tensor([Int64(7), -8, 1 << 50])),
                ("half", try Tensor([Float(1.5), -2]).to(.bfloat16)),
                ("d", try Tensor([0.1, 0.2], shape: [1, 2])),
                // A non-contiguous view and a tensor that requires grad are saved as plain data.
                ("t", try Tensor.arange(6, dtype: .float32).reshape([2, 3]).transpose(0, 1)),
                ("p", try Tensor([Float(3)]).requiresGrad_()),
            ]
            try Pth.save(tensors, to: path)
            #expect(FileManager.default.fileExists(atPath: path))
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            #expect(leftovers == ["out.pth"])  // no temporary file left behind
            let back = Dictionary(uniqueKeysWithValues: try Pth.load(path: path))
            #expect(Set(back.keys) == Set(tensors.map(\.0)))
            for (name, t) in tensors {
                let r = try #require(back[name])
                #expect(r.dtype == t.dtype, "\(name)")
                #expect(r.shape == t.shape, "\(name)")
                #expect(try r.contiguousBytes() == t.contiguous().contiguousBytes(), "\(name)")
            }
            #expect(try back["t"]!.toArray(Float.self) == [0, 3, 1, 4, 2, 5])
            // Saving into a missing folder fails cleanly.
            #expect(throws: TorchError.self) { try Pth.save(tensors, to: dir.appendingPathComponent("no/such/x.pth").path) }
        }
    }
}
