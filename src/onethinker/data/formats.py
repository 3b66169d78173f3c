"""Record files: moved to the data contract (:mod:`onethinker.contract.io`, layouts in
:mod:`onethinker.contract.records`); kept so existing imports keep working."""

from onethinker.contract.io import RecordFileError as FormatError  # noqa: F401
from onethinker.contract.io import read_records, write_records  # noqa: F401
