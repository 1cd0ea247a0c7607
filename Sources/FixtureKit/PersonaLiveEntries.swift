// PersonaLiveEntries.swift — the PersonaLive fixture entries, one list per family file.
import Models
import NN
import Torch

let personaliveEntries: [FixtureEntry] = personaliveFrontEntries + personaliveTemporalEntries
