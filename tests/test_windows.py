import pytest

from rlhf.driver.windows import LengthWindows, generated_perplexity

pytestmark = pytest.mark.unit
M1 = [40960, 49152, 57344, 65536, 73728, 81920]


def test_advances_only_when_p99_is_near_and_perplexity_converged():
    w = LengthWindows(M1, near_frac=0.95, ppl_rel_tol=0.02, patience=2)
    assert w.update(30000, 2.0)["window/current"] == 40960
    assert w.update(39500, 1.5)["window/advanced"] == 0.0        # near, but ppl still moving
    assert w.update(39500, 1.49)["window/advanced"] == 0.0       # one converged step of two
    m = w.update(39500, 1.485)                                    # two converged steps, near
    assert m["window/advanced"] == 1.0 and m["window/current"] == 40960 and w.current == 49152
    assert w.update(30000, 1.48)["window/advanced"] == 0.0       # history reset, not near


def test_does_not_advance_when_far_from_the_window_or_at_the_last_one():
    w = LengthWindows([100, 200], patience=1)
    for _ in range(5):
        assert w.update(50, 1.0)["window/advanced"] == 0.0        # converged but far
    w.update(99, 1.0)
    assert w.current == 200
    for _ in range(3):
        assert w.update(200, 1.0)["window/advanced"] == 0.0       # no window after the last


def test_state_round_trip_and_validation():
    w = LengthWindows(M1, patience=1)
    w.update(40000, 1.2)
    w2 = LengthWindows(M1, patience=1)
    w2.load_state(w.state())
    assert w2.update(40000, 1.2) == w.update(40000, 1.2)
    with pytest.raises(ValueError, match="increasing"):
        LengthWindows([100, 50])


def test_generated_perplexity():
    assert generated_perplexity([[-1.0, -1.0], [-1.0]]) == pytest.approx(2.718281828)
