/**
 * The reference `cp-recover --help` prints after the option list: modes, exit codes, JSON keys.
 * README's "cp-recover" section says the same; keep the two in step.
 */
export const HELP_AFTER = `
Modes (at most one; the default recovers):
  (none)       Take the store's lock, recover the store exactly as openStore does (replay committed
               epochs, discard the uncommitted tail, start a fresh journal segment) and print a summary.
               A lock left by a dead process is reclaimed; a live owner stops cp-recover with exit 3.
  --dry-run    Say what recovery would do. Changes nothing: no lock is taken and nothing is created
               in the store. With --force, also shows what forcing past corruption would lose.
  --verify     Exit 0 only when the store is clean (nothing to replay, nothing to discard, no damage),
               else exit 1 with the reasons (exit 4 when the damage needs --force, 5 when an epoch is
               in doubt). Changes nothing.
  --inspect    Dump the journal one line per record, from the start of the apply cursor's segment,
               following SEGEND records as recovery does; then a summary with the end-of-log reason
               and recovery's verdict. Page with --from <n> (first record number, 0-based) and
               --limit <n>. Changes nothing. Columns: record number, segment seq, offset, payload
               length, type, epoch, crc ("ok" or why the record ends the log: zero, stale, length,
               type, crc, segment-end), then the file name, [start,end) byte range of a write,
               [length,eof) of a truncate, from -> to of a rename, entries of a commit/catalog
               (name@position, and the committed size of an open entry), id "..." of a prepare or
               commit-prepared.

  --dry-run, --verify and --inspect take no lock. They refuse (exit 3) while a live process is
  announced in .cpfile/owner.<pid>; a process that opens the store after that check is not kept
  out, so run them on a store nobody is using.

Damage that is not a torn tail (bytes that were once durable) makes recovery refuse with exit 4,
naming the epochs that would be lost. --force copies the journal to .cpfile/journal.broken-<time>/
first, then recovers to the last epoch before the damage.

Two-phase epochs (store.prepare()): a crash after an epoch's prepare and before its decision leaves
the epoch in doubt. Its decision is not in the journal (a coordinator holds it), and recovery does
not guess: recovery, --dry-run and --verify exit 5 naming the epoch and its id; --inspect shows it.
Give the decision the coordinator took:
  --commit-prepared <id>  recover, committing the epoch in doubt prepared as <id>: its data is applied
  --abort-prepared <id>   recover, aborting it: the files stay as at the epoch before it
With --dry-run they say what that would do. When the store's epoch in doubt has another id, or no
epoch is in doubt, cp-recover refuses with exit 6 and changes nothing.

Exit codes:
  0  ok (recovered; dry run or inspection done; --verify: the store is clean)
  1  failure: no such directory, not a store, unreadable or damaged store, permission denied, I/O
     error; --verify: the store is not clean
  2  usage error
  3  the store is locked by a live process
  4  journal damage that needs --force (nothing was changed)
  5  an epoch is in doubt: decide it with --commit-prepared <id> or --abort-prepared <id> (nothing
     was changed)
  6  --commit-prepared/--abort-prepared: the store has no epoch in doubt with that id (nothing was
     changed)

JSON (--json): one object on stdout, in every mode and on errors (messages still go to stderr).
  Always: tool ("cp-recover"), version, mode ("recover" | "dry-run" | "verify" | "inspect"; null
    on a usage error), dir (absolute; null on a usage error), ok (boolean), exitCode, error (null,
    or { code, message, details? }; code is a CpError code such as ENOENT, EFORMAT, ECORRUPT,
    ELOCKED, EACCES, EINDOUBT (exit 5), or cp-recover's own "ENOTINDOUBT" (exit 6) or "EUSAGE"; an
    ECORRUPT has details { kind, forceable, ... } and one that needs --force (forceable true) has { kind,
    forceable, seq, offset, reason, lostFrom, lostTo, evidence }), inDoubt (null or { id, epoch,
    storeId, decision }: the epoch the journal left prepared and undecided; decision is "commit"
    or "abort" as recovery took it, or as a dry run with --commit-prepared/--abort-prepared would
    take it, else null; not given on a usage error).
  recover, dry-run, verify: dryRun, clean, problems (strings: why the store is not clean),
    lock { taken, reclaimedFrom (dead pids whose lock was or would be reclaimed), live (pids) },
    durationMs (whole run), report: null or { storeId, epoch (recovered epoch), replayedEpochs,
    replayedRecords, replayedBytes, discardedRecords, discardedBytes, tornTail (a damaged last
    record that is a normal crash artifact; false when it is corruption), endReason,
    clean, corruption (null or { seq, offset, reason, lostFrom, lostTo, evidence }), brokenCopy
    (path of the copied journal or null), staleControl (the control file's newest slot was lost
    and the apply cursor was taken from the last commit), filesTouched, cutBack [{ name, size,
    from }] (files cut from length "from" back to their committed size: direct appends of an epoch
    that did not commit), entries [{ name, position, state, size }], durationMs (recovery
    itself) }; report is null when recovery stopped with an error. A dry run of a store with an
    epoch in doubt reports what an abort would do: the epoch's records are discarded and its direct
    appends cut back (with --commit-prepared the text output says what a commit does instead).
  inspect: records [{ n, seq, index, offset, len, size, type, epoch, crc, and as the type has
    them: name, from, to, range { start, end|null }, entries [{ name, position, state, size }],
    nextSeq, id, note }], control (null or { slot, counter, storeId, cursorSeq, cursorOffset,
    appliedEpoch }), controlProblem, segments [{ index, file, seq, size, salt, storeId }],
    invalidSegments [{ index, file, reason }],
    start ({ seq, offset } or null), summary { records, shown, from, limit, byType, bytes,
    dataBytes, segmentsWalked, commits (commit and commit-prepared records), prepares, firstEpoch,
    lastCommitEpoch, uncommittedRecords, inDoubt (null or { id, epoch, seq, offset }: the prepare
    the log ends after), end { seq, offset, reason, explanation, record }, verdict ({ ok: true,
    report, problems } or { ok: false, error }) }.
`;
