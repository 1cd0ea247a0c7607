// BenchCompare.swift — `personalive bench compare`: the `bench unet --config tiny` step timed in this
// process and, in the same run and interleaved (ours, PyTorch, ours, PyTorch …), in PyTorch eager:
// a peer Python script of ours (embedded below) that mirrors BenchUNet.swift with diffusers 0.27
// `UNet2DConditionModel` — same config (sent as JSON), input shapes, thread count, warm-up and step
// counts, and the same loss for the backward pass. Then the tiny stage-1 training step and the
// streaming chunk (BenchComparePersonaLive.swift), whose PyTorch side is Sources/personalive/Peer/.
// Prints the median ms per step on each side, ours÷PyTorch (and the ratio of the means), and how a
// fwd+bwd step splits into its forward and its backward on each side.
import ArgumentParser
import Foundation
import Models
import NN
import Torch
import Training

struct BenchCompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Tiny UNet2D, stage-1 step and streaming chunk here vs. PyTorch eager, interleaved in one run.",
        discussion: """
            Needs the project venv's torch and diffusers (`make venv`). With --threads N both sides run N \
            LibTorch threads; without it both use this process's LibTorch default. The stage-1 step and \
            the streaming chunk run PersonaLive's modules in PyTorch from Sources/personalive/Peer (found \
            from the package root, like Configs/); both sides load the same weights and inputs, and their \
            losses and window outputs are compared before the timing.
            """)

    @Option(help: "Timed steps of each kind per round.") var steps: Int = 10
    @Option(help: "Untimed warm-up steps before each timed block.") var warmup: Int = 2
    @Option(help: "Rounds (each times every cell on our side, then on PyTorch's).") var rounds: Int = 2
    @Option(help: "Comma-separated batch sizes of the UNet2D cells.") var batch: String = "1,8"
    @Option(help: "The stage-1 config whose step and networks (its model:) the PersonaLive cells use.")
    var stage1: String = "Configs/tiny/stage1.yaml"
    @Option(help: "Batch of the stage-1 step (default: the config's data.train_bs).") var stage1Batch: Int?
    @Flag(help: "Time only the UNet2D cells (no stage-1 step or streaming chunk).") var unetOnly = false
    @Option(help: "Python with torch and diffusers (default: $PERSONALIVE_PYTHON, then .venv/bin/python).")
    var python: String?
    @Option(help: "Also record one more step of every cell on both sides into this folder: Chrome traces (ours_<cell>.json, pytorch_<cell>.json; chrome://tracing or Perfetto) and op counts (ops.tsv), and print the ops per step.")
    var profile: String?
    @OptionGroup var global: GlobalOptions

    var batches: [Int] { batch.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        guard steps > 0, warmup >= 0, rounds > 0 else {
            throw ValidationError("--steps and --rounds must be positive and --warmup not negative")
        }
        let parts = batch.split(separator: ",")
        guard !parts.isEmpty, parts.count == batches.count, batches.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--batch must be a comma-separated list of positive integers, e.g. 1,8")
        }
        if let b = stage1Batch, b <= 0 { throw ValidationError("--stage1-batch must be positive") }
    }

    /// One timed cell of the table.
    enum Kind: String, CaseIterable { case forward, backward, stage1, window
        var label: String {
            switch self {
            case .forward: "forward"
            case .backward: "fwd+bwd"
            case .stage1: "stage-1 step"
            case .window: "stream window"
            }
        }
    }

    func run() throws {
        _ = try global.setUp(label: "bench")
        let threads = Torch.numThreads
        let config = BenchUNetCommand.tinyConfig
        let side = 16, tokens = 1
        let crossDim = try config.cross_attention_dim.perBlock(config.down_block_types.count, key: "cross_attention_dim")[0]

        let peer = try PyTorchPeer(python: resolvePython())
        defer { peer.close() }
        var cells: PersonaLiveBenchCells?
        if !unetOnly {
            let root = packageRootForConfigs()
            let path = FileManager.default.fileExists(atPath: stage1) ? stage1 : root + "/" + stage1
            let batch = try stage1Batch ?? TrainingConfig.load(path: path).data.train_bs
            cells = try PersonaLiveBenchCells(stage1Config: path, root: root, batch: batch, dir: peer.directory)
        }
        var setup: [String: Any] = [
            "config": try JSONSerialization.jsonObject(with: JSONEncoder().encode(config)), "threads": threads,
            "side": side, "tokens": tokens, "warmup": warmup, "steps": steps]
        if let cells { setup["personalive"] = cells.peerSpec }
        let hello = try peer.request(String(decoding: try JSONSerialization.data(withJSONObject: setup), as: UTF8.self))

        let unet = try UNet2DConditionModel(config)
        let params = unet.parameters()
        var inputs: [Int: (sample: Tensor, context: Tensor, timesteps: Tensor)] = [:]
        for b in batches {
            inputs[b] = (try Tensor.randn([b, config.in_channels, side, side]), try Tensor.randn([b, tokens, crossDim]),
                         try Tensor.randint(0, 1000, [b]))
        }

        #if DEBUG
        let build = "debug build"
        #else
        let build = "release build"
        #endif
        let pyThreads = hello["threads"] as? Int ?? -1
        let pyParams = hello["parameters"] as? Int ?? -1
        print("ours:    LibTorch \(Torch.runtimeVersion) (headers \(Torch.headerVersion)), \(threads) threads, Swift \(build)")
        print("PyTorch: torch \(hello["torch"] ?? "?") at \(hello["torch_path"] ?? "?"), diffusers \(hello["diffusers"] ?? "?"), "
              + "Python \(hello["python"] ?? "?") eager, \(pyThreads) threads")
        print("model: tiny UNet2DConditionModel, \(unet.parameterCount) parameters (ours) / \(pyParams) (PyTorch); "
              + "latent \(side)×\(side), \(tokens) context token; \(warmup) warm-up + \(steps) timed steps per cell, \(rounds) rounds")
        guard pyThreads == threads else {
            throw CLIError("the PyTorch peer runs \(pyThreads) threads, we run \(threads): the comparison would be unfair")
        }
        guard pyParams == unet.parameterCount else {
            throw CLIError("the PyTorch UNet has \(pyParams) parameters, ours \(unet.parameterCount): the configs differ")
        }
        if let cells { try cells.checkParity(hello) }
        if let v = hello["torch"] as? String, !v.hasPrefix(Torch.runtimeVersion) {
            print("note: the two sides run different LibTorch versions (\(Torch.runtimeVersion) vs \(v)); "
                  + "build with LIBTORCH=<the venv's torch> to compare on the same one")
        }
        fflush(stdout)

        // Seconds of the forward part (through the loss) of each fwd+bwd step, in order.
        var forwardLog: [Double] = []
        // One step of a cell on our side (the peer's step_forward / step_backward / Cells.step).
        func step(_ kind: Kind, _ b: Int) -> () throws -> Void {
            switch kind {
            case .forward:
                let x = inputs[b]!
                return { try Torch.noGrad { _ = try unet(x.sample, timestep: x.timesteps, encoderHiddenStates: x.context) } }
            case .backward:
                let x = inputs[b]!
                return {
                    let start = DispatchTime.now().uptimeNanoseconds
                    let loss = try unet(x.sample, timestep: x.timesteps, encoderHiddenStates: x.context).square().mean()
                    forwardLog.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                    try loss.backward()
                    for p in params { try p.setGrad(nil) }
                }
            case .stage1: return { try cells!.stage1Step() }
            case .window: return { _ = try Torch.inferenceMode { try cells!.windowPass() } }
            }
        }
        // One measurement on our side: the seconds of each of `steps` steps after `warmup` untimed steps.
        func ours(_ kind: Kind, _ b: Int) throws -> [Double] {
            unet.train(kind == .backward)
            let body = step(kind, b)
            for _ in 0..<warmup { try body() }
            forwardLog.removeAll()
            return try (0..<steps).map { _ in try time { try body() } }
        }

        // Per round and side: the step times of one measurement; for fwd+bwd, the forward parts too.
        struct Row {
            let kind: Kind; let batch: Int
            var ours: [[Double]] = [], theirs: [[Double]] = []
            var oursForward: [Double] = [], theirsForward: [Double] = []
        }
        var rows = batches.flatMap { b in [Kind.forward, .backward].map { Row(kind: $0, batch: b) } }
        if let cells { rows += [Row(kind: .stage1, batch: cells.stage1Batch), Row(kind: .window, batch: 1)] }
        for round in 1...rounds {
            for i in rows.indices {
                let (kind, b) = (rows[i].kind, rows[i].batch)
                rows[i].ours.append(try ours(kind, b))
                if kind == .backward { rows[i].oursForward += forwardLog }
                let reply = try peer.request(#"{"kind": "\#(kind.rawValue)", "batch": \#(b)}"#)
                guard let s = reply["seconds"] as? [Double], s.count == steps, s.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                    throw CLIError("the PyTorch peer returned no \(steps) step times for \(kind.label) b\(b): \(reply)")
                }
                rows[i].theirs.append(s)
                if kind == .backward {
                    guard let f = reply["forward"] as? [Double], f.count == steps else {
                        throw CLIError("the PyTorch peer returned no forward times for \(kind.label) b\(b): \(reply)")
                    }
                    rows[i].theirsForward += f
                }
            }
            FileHandle.standardError.write(Data("round \(round)/\(rounds) done\n".utf8))
        }

        // The median step is the figure (a step that a page fault, a timer tick or another process
        // slowed counts as one step, not as a tenth of the mean); the ratio of the means is shown too.
        print("\n| median ms per step | ours | PyTorch | ours÷PyTorch | ratio of means |")
        print("|---|---|---|---|---|")
        for row in rows {
            let (ours, theirs) = (row.ours.map(median), row.theirs.map(median))
            let meanRatios = zip(row.ours, row.theirs).map { mean($0) / mean($1) }
            func list(_ v: [Double], _ f: String) -> String { v.map { String(format: f, $0) }.joined(separator: " / ") }
            print("| \(row.kind.label) b\(row.batch) | \(list(ours.map { $0 * 1e3 }, "%.1f")) | "
                  + "\(list(theirs.map { $0 * 1e3 }, "%.1f")) | \(list(zip(ours, theirs).map { $0 / $1 }, "%.2f")) | "
                  + "\(list(meanRatios, "%.2f")) |")
        }
        print("\n(one value per round, in order, each from \(steps) timed steps; ratios are per round, from the same run)")
        // Where fwd+bwd spends it: the forward (Swift or Python driving LibTorch, recording the graph)
        // and the backward (LibTorch's autograd engine in C++ on both sides, then the gradients cleared).
        print("\n| fwd+bwd, median ms per step over all rounds | forward, ours | PyTorch | backward, ours | PyTorch |")
        print("|---|---|---|---|---|")
        for row in rows where row.kind == .backward {
            let total = (row.ours.flatMap { $0 }, row.theirs.flatMap { $0 })
            let backward = (zip(total.0, row.oursForward).map { $0 - $1 }, zip(total.1, row.theirsForward).map { $0 - $1 })
            let v = [median(row.oursForward), median(row.theirsForward), median(backward.0), median(backward.1)]
            print("| batch \(row.batch) | " + v.map { String(format: "%.1f", $0 * 1e3) }.joined(separator: " | ") + " |")
        }
        if let profile { try profileCells(rows.map { ($0.kind, $0.batch) }, into: profile, peer: peer, step: step) }
    }

    /// One more step of every cell on both sides, traced and op-counted: a table of ops per step
    /// (operator calls and autograd backward nodes, as RecordFunction sees them on both sides) and
    /// the ops we call more often than PyTorch, which is where dispatch overhead goes.
    func profileCells(_ cells: [(Kind, Int)], into dir: String, peer: PyTorchPeer,
                      step: (Kind, Int) -> () throws -> Void) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var tsv = "cell\tside\top\tcount\n"
        print("\n| ops per step | ours | PyTorch | ours − PyTorch | traces |")
        print("|---|---|---|---|---|")
        var notes: [String] = []
        for (kind, b) in cells {
            let cell = "\(kind.rawValue)_b\(b)"
            let body = step(kind, b)
            let ourTrace = "\(dir)/ours_\(cell).json", theirTrace = "\(dir)/pytorch_\(cell).json"
            let ours = try Profiler.countOps { try Profiler.trace(to: ourTrace) { try body() } }
            let reply = try peer.request(#"{"kind": "\#(kind.rawValue)", "batch": \#(b), "profile": "\#(theirTrace)"}"#)
            guard let theirs = reply["ops"] as? [String: Int] else {
                throw CLIError("the PyTorch peer returned no op counts for \(kind.label) b\(b): \(reply)")
            }
            func isOp(_ name: String) -> Bool { name.hasPrefix("aten::") || name.contains("Backward") }
            let a = ours.filter { isOp($0.key) }, t = theirs.filter { isOp($0.key) }
            let (na, nt) = (a.values.reduce(0, +), t.values.reduce(0, +))
            print("| \(kind.label) b\(b) | \(na) | \(nt) | \(na - nt >= 0 ? "+" : "")\(na - nt) | `\(ourTrace)`, `\(theirTrace)` |")
            for (side, counts) in [("ours", a), ("pytorch", t)] {
                for (name, n) in counts.sorted(by: { $0.key < $1.key }) { tsv += "\(cell)\t\(side)\t\(name)\t\(n)\n" }
            }
            var extra: [(name: String, count: Int)] = []
            for name in Set(a.keys).union(t.keys) {
                let d: Int = (a[name] ?? 0) - (t[name] ?? 0)
                if d > 0 { extra.append((name, d)) }
            }
            extra.sort { $0.count > $1.count || ($0.count == $1.count && $0.name < $1.name) }
            if !extra.isEmpty {
                let listed: [String] = extra.prefix(6).map { "\($0.name) +\($0.count)" }
                notes.append("\(kind.label) b\(b), more calls than PyTorch: " + listed.joined(separator: ", "))
            }
        }
        try tsv.write(toFile: "\(dir)/ops.tsv", atomically: true, encoding: .utf8)
        print("")
        for n in notes { print(n) }
        print("(op counts of one step each, also in \(dir)/ops.tsv)")
    }

    func resolvePython() throws -> String {
        let py = python ?? ProcessInfo.processInfo.environment["PERSONALIVE_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
            ?? FileManager.default.currentDirectoryPath + "/.venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: py) else {
            throw CLIError("no Python at \(py): run `make venv` (installs torch and diffusers into .venv), "
                           + "or set --python / PERSONALIVE_PYTHON to a Python that has them")
        }
        return py
    }
}

/// The PyTorch side: a Python process running `script`, one JSON request per line on its stdin and one
/// `@@ {json}` reply line per request on its stdout (other output is passed through to stderr).
final class PyTorchPeer {
    let process = Process()
    let toPeer = Pipe(), fromPeer = Pipe()
    var buffer = Data()
    /// The peer's scratch folder (its script, and the weights and inputs we hand over); removed by `close`.
    let directory: URL

    init(python: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("personalive-bench-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("bench_compare_peer.py")
        try Data(Self.script.utf8).write(to: file)
        directory = dir
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-u", file.path]
        process.standardInput = toPeer
        signal(SIGPIPE, SIG_IGN)  // a peer that exited must become an error message, not kill this process
        process.standardOutput = fromPeer
        do { try process.run() } catch { throw CLIError("cannot start \(python): \(error)") }
    }

    /// Sends one request line and returns the peer's reply; a peer-side error becomes a CLIError.
    func request(_ json: String) throws -> [String: Any] {
        // A failed write means the peer has exited; its last reply (or EOF) is still read below and reported.
        try? toPeer.fileHandleForWriting.write(contentsOf: Data((json.replacingOccurrences(of: "\n", with: " ") + "\n").utf8))
        while true {
            let line = try readLine()
            guard line.hasPrefix("@@ ") else { FileHandle.standardError.write(Data((line + "\n").utf8)); continue }
            guard let reply = try JSONSerialization.jsonObject(with: Data(line.dropFirst(3).utf8)) as? [String: Any] else {
                throw CLIError("the PyTorch peer sent an unreadable reply: \(line)")
            }
            if let message = reply["error"] as? String { throw CLIError(message) }
            return reply
        }
    }

    func readLine() throws -> String {
        while true {
            if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...nl)
                return line
            }
            let chunk = fromPeer.fileHandleForReading.availableData
            if chunk.isEmpty {
                process.waitUntilExit()
                throw CLIError("the PyTorch peer (\(process.executableURL?.path ?? "python")) exited with status "
                               + "\(process.terminationStatus) before replying (its error is printed above)")
            }
            buffer.append(chunk)
        }
    }

    func close() {
        try? toPeer.fileHandleForWriting.close()
        if process.isRunning { process.waitUntilExit() }
        if let args = process.arguments, let path = args.last {
            try? FileManager.default.removeItem(at: URL(fileURLWithPath: path).deletingLastPathComponent())
        }
    }

    /// Mirrors BenchCompareCommand's `ours` (and BenchUNet.swift) in PyTorch eager.
    static let script = #"""
    import json, sys, time

    def reply(obj):
        sys.stdout.write("@@ " + json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        import torch
        import diffusers
        from diffusers import UNet2DConditionModel
    except ImportError as e:
        reply({"error": f"the PyTorch peer ({sys.executable}) cannot import {e.name}: run `make venv` "
                        "(installs torch and diffusers into .venv), or point --python / PERSONALIVE_PYTHON "
                        "to a Python that has torch and diffusers 0.27"})
        sys.exit(2)

    first = sys.stdin.readline()
    if not first:
        sys.exit(0)  # the command stopped before setting up (e.g. a bad option): nothing to report
    setup = json.loads(first)
    torch.set_num_threads(setup["threads"])
    try:
        unet = UNet2DConditionModel(**setup["config"])
    except TypeError as e:
        reply({"error": f"diffusers {diffusers.__version__} rejects our UNet config: {e}"})
        sys.exit(2)
    params = list(unet.parameters())
    side, tokens, warmup, steps = setup["side"], setup["tokens"], setup["warmup"], setup["steps"]
    cfg = setup["config"]
    cross = cfg["cross_attention_dim"]
    cross = cross[0] if isinstance(cross, list) else cross
    inputs = {}

    def step_forward(x):
        with torch.no_grad():
            unet(x[0], x[2], encoder_hidden_states=x[1], return_dict=False)

    forward_log = []  # seconds of the forward part (through the loss) of each fwd+bwd step

    def step_backward(x):
        start = time.perf_counter()
        loss = unet(x[0], x[2], encoder_hidden_states=x[1], return_dict=False)[0].square().mean()
        forward_log.append(time.perf_counter() - start)
        loss.backward()
        for p in params:
            p.grad = None

    hello = {"torch": torch.__version__, "torch_path": torch.__path__[0], "diffusers": diffusers.__version__,
             "python": sys.version.split()[0], "threads": torch.get_num_threads(),
             "parameters": sum(p.numel() for p in params)}
    # The stage-1 step and the streaming chunk: PersonaLive's modules from Sources/personalive/Peer.
    cells = None
    if "personalive" in setup:
        spec = setup["personalive"]
        sys.path.insert(0, spec["peer_dir"])
        try:
            import bench_cells
            cells = bench_cells.Cells(spec)
        except Exception as e:
            reply({"error": f"the PyTorch peer cannot set up the stage-1 and streaming cells from {spec['peer_dir']}: "
                            f"{type(e).__name__}: {e}"})
            sys.exit(2)
        hello["personalive"] = cells.hello()
    reply(hello)
    for line in sys.stdin:
        req = json.loads(line)
        kind, b = req["kind"], req["batch"]
        if kind in ("stage1", "window"):
            body = cells.step(kind)
        else:
            if b not in inputs:
                inputs[b] = (torch.randn(b, cfg["in_channels"], side, side), torch.randn(b, tokens, cross),
                             torch.randint(0, 1000, (b,)))
            x = inputs[b]
            forward = kind == "forward"
            unet.train(not forward)
            step = step_forward if forward else step_backward
            body = lambda: step(x)
        if "profile" in req:
            from collections import Counter
            from torch.profiler import profile, ProfilerActivity
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                body()
            prof.export_chrome_trace(req["profile"])
            reply({"ops": dict(Counter(e.name for e in prof.events()))})
            continue
        for _ in range(warmup):
            body()
        seconds = []
        forward_log.clear()
        for _ in range(steps):
            start = time.perf_counter()
            body()
            seconds.append(time.perf_counter() - start)
        reply({"seconds": seconds, "forward": forward_log} if kind == "backward" else {"seconds": seconds})
    """#
}

/// The median of a non-empty list (the mean of the middle two for an even count).
fileprivate func median(_ xs: [Double]) -> Double {
    let s = xs.sorted(), m = s.count / 2
    return s.count % 2 == 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

fileprivate func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }
