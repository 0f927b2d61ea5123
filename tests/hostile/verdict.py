"""One attack's verdict: the checks that failed and the figures it measured.
An attack that raises counts as failed, with the exception as its reason."""
import time


class Verdict:
    def __init__(self, number, name):
        self.number = number
        self.name = name
        self.failures = []
        self.figures = []
        self.started = time.monotonic()
        self.seconds = 0.0
        self.skipped = []

    def check(self, ok, what):
        """Records `what` as a failure unless `ok`; returns `ok`."""
        if not ok:
            self.failures.append(what)
        return ok

    def figure(self, text):
        self.figures.append(text)
        print(f"    {self.number}: {text}", flush=True)

    def skip(self, text):
        self.skipped.append(text)
        print(f"    {self.number}: SKIPPED {text}", flush=True)

    @property
    def passed(self):
        return not self.failures

    def finish(self):
        self.seconds = time.monotonic() - self.started
        word = "PASS" if self.passed else "FAIL"
        print(f"{word} {self.number}. {self.name} ({self.seconds:.0f} s)", flush=True)
        for f in self.failures:
            print(f"      - {f}", flush=True)
