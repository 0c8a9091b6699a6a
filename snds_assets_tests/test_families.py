"""Families worked on a few at a time, parents first (``snds_assets.families``): a reception's and an extraction's."""
import threading

import pytest

from snds_assets.families import in_dependency_order


def test_families_run_after_their_parents_and_at_most_two_at_a_time():
    parents = {"ER_PRS_F": ["IR_BEN_R"], "ER_PHA_F": ["ER_PRS_F"], "ER_BIO_F": ["ER_PRS_F"], "T_MCOaaC": []}
    lock, running, peak, finished, started = threading.Lock(), set(), [0], [], []

    def work(family: str) -> str:
        with lock:
            assert all(p in finished for p in parents.get(family, [])), family
            running.add(family)
            peak[0] = max(peak[0], len(running))
        threading.Event().wait(0.05)
        with lock:
            running.discard(family)
            finished.append(family)
        return family.lower()

    order = ["IR_BEN_R", "ER_PRS_F", "ER_PHA_F", "ER_BIO_F", "T_MCOaaC"]
    out = list(in_dependency_order(order, parents, work, workers=2,
                                   started=lambda f, done, total, under_way: started.append((f, total, under_way))))
    assert sorted(out) == sorted((f, f.lower()) for f in order)
    assert peak[0] == 2 and [t for _, t, _ in started] == [5] * 5
    # the family under way beside each one started, for the progress bar: IR_BEN_R, started first, and T_MCOaaC,
    # which waits for no parent, start together
    assert started[:2] == [("IR_BEN_R", 5, []), ("T_MCOaaC", 5, ["IR_BEN_R"])]
    assert all(len(under_way) <= 1 for _, _, under_way in started)
    assert finished.index("IR_BEN_R") < finished.index("ER_PRS_F") < min(finished.index("ER_PHA_F"),
                                                                        finished.index("ER_BIO_F"))


def test_a_failing_family_stops_the_others_from_starting():
    begun = []

    def work(family: str) -> None:
        begun.append(family)
        if family == "IR_BEN_R":
            raise RuntimeError("IR_BEN_R failed")

    with pytest.raises(RuntimeError, match="IR_BEN_R failed"):
        list(in_dependency_order(["IR_BEN_R", "ER_PRS_F"], {"ER_PRS_F": ["IR_BEN_R"]}, work, workers=2))
    assert begun == ["IR_BEN_R"]


@pytest.mark.parametrize("attempt", range(40))
def test_an_interrupted_run_stops_the_families_at_work(attempt):
    """Ctrl-C or SIGTERM (Dagster's interruption in the run's thread) left a family's thread archiving and curating
    to its end, its Spark jobs running: a 60k-patient ER_PRS_F took 20 s to stop. The run's Spark work is
    interrupted (``on_interrupt``), a family's own loop stops at its next ``check_stop``, and none starts. Forty
    times: a signal that reached the run's thread just as it began to wait for its families was handled only once a
    family ended (one attempt in twenty or so)."""
    import signal

    from snds_assets.families import WorkStopped, check_stop

    ended, interrupted, started = {}, [], []
    main = threading.main_thread().ident

    def work(family: str) -> str:
        if family == "ER_PRS_F":
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C reaches the run's thread, waiting for its families
            for _ in range(3000):  # an archive's reads: 30 s if nothing stopped it
                try:
                    check_stop()
                except WorkStopped:
                    ended[family] = "stopped"
                    raise
                threading.Event().wait(0.01)
        ended[family] = "done"
        return family

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in in_dependency_order(["IR_BEN_R", "ER_PRS_F", "ER_PHA_F"], {"ER_PHA_F": ["ER_PRS_F"]}, work,
                                         workers=2, started=lambda f, *_: started.append(f),
                                         on_interrupt=lambda: interrupted.append(True)):
                pass
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ended.get("ER_PRS_F") == "stopped" and interrupted and all(interrupted)
    assert "ER_PHA_F" not in started  # a child of the interrupted family never starts
    check_stop()  # this thread works on no family: nothing to stop


def test_a_worker_no_family_is_ready_for_does_the_next_ones_work_ahead():
    """A reception's archive needs no parent: while IR_BEN_R is curated, the other worker archives ER_PRS_F (then
    the next waiting family), instead of idling until IR_BEN_R ends. A family's work starts after its ahead has
    ended, and a family ready when a worker is free gets no ahead: its work does it all."""
    parents = {"ER_PRS_F": ["IR_BEN_R"], "ER_PHA_F": ["ER_PRS_F"]}
    lock, log, told = threading.Lock(), [], []
    parent_done = threading.Event()

    def work(family: str) -> str:
        with lock:
            log.append(("work", family))
        if family == "IR_BEN_R":
            assert parent_done.wait(5)  # curated only once ER_PRS_F's and ER_PHA_F's aheads have run beside it
        with lock:
            log.append(("done", family))
        return family.lower()

    def ahead(family: str) -> None:
        with lock:
            log.append(("ahead", family))
        threading.Event().wait(0.05)
        with lock:
            log.append(("ahead done", family))
            if {f for what, f in log if what == "ahead done"} == {"ER_PRS_F", "ER_PHA_F"}:
                parent_done.set()

    out = list(in_dependency_order(["IR_BEN_R", "ER_PRS_F", "ER_PHA_F"], parents, work, workers=2, ahead=ahead,
                                   ahead_started=lambda f, under_way: told.append((f, under_way))))
    assert out == [("IR_BEN_R", "ir_ben_r"), ("ER_PRS_F", "er_prs_f"), ("ER_PHA_F", "er_pha_f")]
    assert told == [("ER_PRS_F", ["IR_BEN_R"]), ("ER_PHA_F", ["IR_BEN_R"])]
    assert ("ahead", "IR_BEN_R") not in log  # ready at once: its work archives it
    for family in ("ER_PRS_F", "ER_PHA_F"):
        assert log.index(("ahead done", family)) < log.index(("work", family))
        assert log.index(("ahead", family)) < log.index(("done", "IR_BEN_R"))


def test_a_failing_ahead_fails_the_run_and_starts_no_family():
    begun = []

    def work(family: str) -> None:
        begun.append(family)
        threading.Event().wait(0.2)

    def ahead(family: str) -> None:
        raise OSError(28, "No space left on device (archiving ER_PRS_F)")

    with pytest.raises(OSError, match="No space left"):
        list(in_dependency_order(["IR_BEN_R", "ER_PRS_F"], {"ER_PRS_F": ["IR_BEN_R"]}, work, workers=2, ahead=ahead))
    assert begun == ["IR_BEN_R"]
