"""The field's metrics on cases worked out by hand."""
import pytest

from gluon_bertft.common import metrics


def test_classification_report_by_hand():
    # class 0: tp 1, predicted 2, gold 2 -> F1 0.5; class 1: tp 2, predicted 3, gold 3 -> F1 2/3
    report = metrics.classification_report([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], ['neg', 'pos'])
    assert report['accuracy'] == pytest.approx(0.6)
    assert report['f1[neg]'] == pytest.approx(0.5)
    assert report['f1[pos]'] == pytest.approx(2 / 3)
    assert report['macro_f1'] == pytest.approx((0.5 + 2 / 3) / 2)


def test_majority_prediction_has_zero_f1_for_the_minority():
    report = metrics.classification_report([0, 0, 0, 1], [0, 0, 0, 0], ['ham', 'spam'])
    assert report['accuracy'] == 0.75 and report['f1[spam]'] == 0.0
    assert report['f1[ham]'] == pytest.approx(6 / 7)


@pytest.mark.parametrize('tags, spans', [
    # IOB1 (CoNLL-2003): I- starts an entity, B- only splits two of one type
    (['I-PER', 'I-PER', 'O', 'I-LOC', 'B-LOC', 'I-LOC'],
     {('PER', 0, 1), ('LOC', 3, 3), ('LOC', 4, 5)}),
    # IOB2
    (['B-ORG', 'I-ORG', 'B-ORG', 'O', 'B-MISC'], {('ORG', 0, 1), ('ORG', 2, 2), ('MISC', 4, 4)}),
    # invalid IOB2 as a model may predict it: conlleval starts a chunk at I- after O or another type
    (['O', 'I-ORG', 'B-PER', 'I-LOC', 'I-LOC'], {('ORG', 1, 1), ('PER', 2, 2), ('LOC', 3, 4)}),
    (['O', 'O'], set()),
])
def test_entity_spans_as_conlleval_chunks(tags, spans):
    assert metrics.entity_spans(tags) == spans


def test_entity_f1_by_hand():
    gold = [['B-PER', 'I-PER', 'O', 'B-LOC'], ['B-ORG', 'I-ORG', 'O']]
    # right PER; LOC typed ORG (wrong); ORG cut short (wrong, entities match whole only)
    pred = [['B-PER', 'I-PER', 'O', 'B-ORG'], ['B-ORG', 'O', 'O']]
    result = metrics.entity_f1(gold, pred)
    assert result['precision'] == pytest.approx(1 / 3)
    assert result['recall'] == pytest.approx(1 / 3)
    assert result['f1'] == pytest.approx(1 / 3)
    all_o = metrics.entity_f1(gold, [['O'] * 4, ['O'] * 3])
    assert all_o == {'precision': 0.0, 'recall': 0.0, 'f1': 0.0}


def test_entity_f1_iob1_gold_equals_its_iob2_form():
    iob1 = [['I-PER', 'I-PER', 'B-PER', 'O', 'I-MISC']]
    iob2 = [['B-PER', 'I-PER', 'B-PER', 'O', 'B-MISC']]
    assert metrics.entity_f1(iob1, iob2)['f1'] == 1.0


def test_squad_normalisation_as_the_official_script():
    assert metrics.normalize_answer('The  Denver Broncos!') == 'denver broncos'
    assert metrics.normalize_answer('an apple, a pear') == 'apple pear'
    assert metrics.normalize_answer('theory') == 'theory'  # only whole articles go


def test_squad_em_f1_by_hand():
    # 'Denver Broncos' vs 'the Broncos': precision 1/2, recall 1/1 -> F1 2/3
    assert metrics.squad_f1('Denver Broncos', 'the Broncos') == pytest.approx(2 / 3)
    result = metrics.squad_em_f1(['Denver Broncos', 'Paris', ''],
                                 [['the Broncos', 'Denver Broncos.'], ['London'], ['1998']])
    # q1: EM 1 (second gold), F1 1; q2: 0, 0; q3: empty answer 0, 0
    assert result['exact_match'] == pytest.approx(100 / 3)
    assert result['f1'] == pytest.approx(100 / 3)
    # the max over golds is per question: 2/3 F1 from the best gold
    assert metrics.squad_em_f1(['Denver Broncos'], [['the Broncos', 'Carolina']])['f1'] == \
        pytest.approx(100 * 2 / 3)


def test_correlations_by_hand():
    perfect = metrics.correlations([1, 2, 3, 4], [2, 4, 6, 8])
    assert perfect['pearson'] == pytest.approx(1) and perfect['spearman'] == pytest.approx(1)
    # deviations (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): r = 4 / 5; Spearman 1 - 6*2/(4*15)
    swapped = metrics.correlations([1, 2, 3, 4], [1, 3, 2, 4])
    assert swapped['pearson'] == pytest.approx(0.8) and swapped['spearman'] == pytest.approx(0.8)
    assert swapped['mse'] == pytest.approx(0.5)
    assert metrics.correlations([1, 2, 3], [2, 2, 2])['pearson'] is None  # undefined, not 0
    assert metrics.correlations([2, 2, 2], [1, 2, 3])['spearman'] is None
    assert 'pearson undefined' in metrics.format_metrics(metrics.correlations([1, 2], [3, 3]))
