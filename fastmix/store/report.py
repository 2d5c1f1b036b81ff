"""What a store run reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastmix.spec import MixSpec


@dataclass
class StoreReport:
    """Result of :func:`fastmix.mix_store` or :func:`fastmix.unmix_store`.

    Attributes
    ----------
    operation : str
        ``"mix"`` or ``"unmix"``.
    destination : str
        The file written (the source itself in place).
    spec : MixSpec
        The mixing parameters.
    images : int
        Images processed by this run (a resumed in-place run: those of the windows it had
        left; ``extra["store_images"]`` is the whole store).
    windows : int
        Windows processed by this run.
    window : int
        Window length in images.
    unpartnered : int
        Images left unmixed because no other image of their label was in their window.
    pixel_bytes : int
        Bytes of pixels processed.
    seconds : float
        Wall time.
    io_path : str
        How the pixels were read and written (``"raw-chunks"``, ``"h5py"``, ...).
    """

    operation: str
    destination: str
    spec: MixSpec
    images: int
    windows: int
    window: int
    unpartnered: int
    pixel_bytes: int
    seconds: float
    io_path: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        """Throughput in images per second."""
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    @property
    def megabytes_per_second(self) -> float:
        """Throughput in MB/s (10**6 bytes of pixels)."""
        return self.pixel_bytes / 1e6 / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        """One human line."""
        verb = "mixed" if self.operation == "mix" else "unmixed"
        rate = (f"in {self.seconds:.2f} s ({self.images_per_second:,.0f} images/s, "
                f"{self.megabytes_per_second:,.0f} MB/s) -> {self.destination}")
        resumed_at = self.extra.get("resumed_at_window")
        if self.extra.get("already_complete"):
            line = (f"nothing to resume: the in-place {self.operation} of "
                    f"{self.destination} was already complete")
        elif resumed_at is not None:
            total = self.extra.get("store_windows", resumed_at + self.windows)
            if self.windows:
                line = (f"resumed at window {resumed_at + 1:,} of {total:,}: {verb} the "
                        f"{self.images:,} images of the {self.windows:,} window(s) left {rate}")
            else:
                line = (f"resumed after all {total:,} windows were written: finished the "
                        f"interrupted run in {self.seconds:.2f} s -> {self.destination}")
        else:
            line = (f"{verb} {self.images:,} images in {self.windows:,} window(s) of "
                    f"{self.window:,} {rate}")
        if self.unpartnered:
            line += f"; {self.unpartnered:,} image(s) left unmixed (no same-label partner)"
        return line

    def to_dict(self) -> dict:
        """Plain JSON-compatible values."""
        return {"operation": self.operation, "destination": self.destination,
                "spec": self.spec.to_dict(), "images": self.images, "windows": self.windows,
                "window": self.window, "unpartnered": self.unpartnered,
                "pixel_bytes": self.pixel_bytes, "seconds": self.seconds,
                "images_per_second": self.images_per_second,
                "megabytes_per_second": self.megabytes_per_second, "io_path": self.io_path,
                **self.extra}
