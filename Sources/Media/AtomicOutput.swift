// AtomicOutput.swift — write-to-a-temporary-sibling-then-rename, so a failed or interrupted writer
// never leaves a partial file at the destination. Used by the video/image writers and the HDF5
// dataset writers.
import Foundation

public enum AtomicOutput {
    /// A hidden temporary path next to `path` (same directory, so the final rename stays on one file
    /// system and is atomic). The extension is kept because FFmpeg picks the container from it.
    public static func temporarySibling(of path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent()
        let ext = url.pathExtension
        let stem = url.deletingPathExtension().lastPathComponent
        let token = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let name = ".\(stem).partial-\(token)" + (ext.isEmpty ? "" : ".\(ext)")
        return dir.appendingPathComponent(name).path
    }

    /// Moves `temporary` over `destination` (replacing it) with rename(2).
    public static func commit(_ temporary: String, to destination: String) throws {
        if rename(temporary, destination) != 0 {
            let reason = String(cString: strerror(errno))
            throw MediaError(file: destination, "cannot move the finished file into place from \(temporary): \(reason)")
        }
    }

    /// Removes a temporary file, ignoring a missing one.
    public static func discard(_ temporary: String) {
        _ = unlink(temporary)
    }

    /// Creates the parent directory of `path` if needed.
    public static func ensureParentDirectory(of path: String) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw MediaError(file: path, "cannot create the directory \(dir.path): \(error.localizedDescription)")
        }
    }

    /// Writes bytes to `path` through a temporary sibling.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        try ensureParentDirectory(of: path)
        let tmp = temporarySibling(of: path)
        guard let fp = fopen(tmp, "wb") else {
            throw MediaError(file: path, "cannot create \(tmp): \(String(cString: strerror(errno)))")
        }
        let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, fp) }
        let flushed = fflush(fp) == 0 && fsync(fileno(fp)) == 0
        fclose(fp)
        guard n == bytes.count, flushed else {
            discard(tmp)
            throw MediaError(file: path, "short write (\(n) of \(bytes.count) bytes)")
        }
        do { try commit(tmp, to: path) } catch { discard(tmp); throw error }
    }
}
