// TrainLauncher.swift — `personalive train CONFIG --nproc N`: starts N local workers the way
// torchrun does (torch/distributed/run.py, torch/distributed/elastic/agent/server/local_elastic_agent.py):
// a free MASTER_PORT on 127.0.0.1, RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT per
// child, signals forwarded, and the first failure reported with the rank it came from.
import ArgumentParser
import Foundation
import Logging

enum TrainLauncher {
    /// This process's own arguments for a worker: the same, without --nproc.
    static func workerArguments() -> [String] {
        var args = Array(CommandLine.arguments.dropFirst())
        var i = 0
        while i < args.count {
            if args[i] == "--nproc" { args.removeSubrange(i..<min(i + 2, args.count)); continue }
            if args[i].hasPrefix("--nproc=") { args.remove(at: i); continue }
            i += 1
        }
        return args
    }

    /// A TCP port on 127.0.0.1 that is free now (bound to port 0, then released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CLIError("cannot open a socket to find a free port (errno \(errno))") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Bool in
                bind(fd, p, len) == 0 && getsockname(fd, p, &len) == 0
            }
        }
        guard bound else { throw CLIError("cannot bind a socket on 127.0.0.1 to find a free port (errno \(errno))") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Runs `arguments` (this executable's own, without --nproc) as `nproc` workers; returns when all
    /// have exited. Throws naming the first rank that failed. A worker still running `grace`
    /// seconds after another failed is terminated.
    static func run(arguments: [String], nproc: Int, grace: Double, logger: Logger) throws {
        let port = try freePort()
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        logger.info("starting \(nproc) workers (rendezvous 127.0.0.1:\(port))")
        var workers: [Process] = []
        let base = ProcessInfo.processInfo.environment
        for rank in 0..<nproc {
            let p = Process()
            p.executableURL = exe
            p.arguments = arguments
            var env = base
            env["RANK"] = "\(rank)"
            env["LOCAL_RANK"] = "\(rank)"
            env["WORLD_SIZE"] = "\(nproc)"
            env["LOCAL_WORLD_SIZE"] = "\(nproc)"
            env["MASTER_ADDR"] = "127.0.0.1"
            env["MASTER_PORT"] = "\(port)"
            p.environment = env
            do { try p.run() } catch {
                for w in workers { w.terminate() }
                throw CLIError("cannot start worker rank \(rank): \(error)")
            }
            workers.append(p)
        }
        // Ctrl-C / SIGTERM go to every worker (each checkpoints and stops at the same step).
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { for w in workers where w.isRunning { kill(w.processIdentifier, sig) } }
            src.resume()
            sources.append(src)
        }
        defer { sources.forEach { $0.cancel() } }

        var firstFailure: (rank: Int, what: String)?
        var failedAt: Date?
        var reported = Set<Int>()
        while workers.contains(where: { $0.isRunning }) {
            for (rank, w) in workers.enumerated() where !w.isRunning && !reported.contains(rank) {
                reported.insert(rank)
                if let what = failure(w) {
                    logger.error("worker rank \(rank) (pid \(w.processIdentifier)) \(what)")
                    if firstFailure == nil { firstFailure = (rank, what); failedAt = Date() }
                }
            }
            if let t = failedAt, Date().timeIntervalSince(t) > grace {
                for (rank, w) in workers.enumerated() where w.isRunning {
                    logger.error("worker rank \(rank) still running \(Int(grace)) s after rank \(firstFailure!.rank) failed; terminating it")
                    w.terminate()
                }
                failedAt = .distantFuture
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        for (rank, w) in workers.enumerated() where !reported.contains(rank) {
            if let what = failure(w) {
                logger.error("worker rank \(rank) (pid \(w.processIdentifier)) \(what)")
                if firstFailure == nil { firstFailure = (rank, what) }
            }
        }
        if let f = firstFailure {
            throw CLIError("training failed: worker rank \(f.rank) \(f.what) (the last complete checkpoint is kept; "
                                  + "continue with --resume latest)")
        }
    }

    static func failure(_ p: Process) -> String? {
        switch p.terminationReason {
        case .uncaughtSignal: return "was killed by signal \(p.terminationStatus)"
        case .exit: return p.terminationStatus == 0 ? nil : "exited with status \(p.terminationStatus)"
        @unknown default: return "ended (\(p.terminationStatus))"
        }
    }
}
