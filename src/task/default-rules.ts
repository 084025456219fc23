// The decomposition rules a node uses when no --task-rules file is given: common
// multi-step requests, each split into sub-tasks by capability. Operators copy them
// (`dmsc task rules > rules.json`), edit, and start the node with --task-rules.
import type { RuleSet } from './decompose.js';

export const DEFAULT_RULES: RuleSet = {
  version: 1,
  rules: [
    {
      name: 'translate-scan',
      patterns: ['\\btranslate\\b.*\\b(?:scan|scanned|image|photo|picture|pdf)\\b(?:.*\\b(?:into|to) (?<lang>[a-z]{2,20})\\b)?'],
      subtasks: [
        { id: 'ocr', capability: '/capability/vision/ocr', input: { document: '{{input.document}}' } },
        { id: 'translate', capability: '/capability/text/translate', dependsOn: ['ocr'], input: { text: '{{ocr.output.text}}', to: '{{input.to}}' } },
      ],
    },
    {
      name: 'summarize-scan',
      patterns: ['\\bsummari[sz]e\\b.*\\b(?:scan|scanned|image|photo|pdf)\\b'],
      subtasks: [
        { id: 'ocr', capability: '/capability/vision/ocr', input: { document: '{{input.document}}' } },
        { id: 'summarize', capability: '/capability/text/summarize', dependsOn: ['ocr'], input: { text: '{{ocr.output.text}}' } },
      ],
    },
    {
      name: 'transcribe-translate',
      keywords: { all: ['transcribe', 'translate'] },
      subtasks: [
        { id: 'asr', capability: '/capability/audio/transcribe', input: { audio: '{{input.audio}}' } },
        { id: 'translate', capability: '/capability/text/translate', dependsOn: ['asr'], input: { text: '{{asr.output.text}}', to: '{{input.to}}' } },
      ],
    },
    {
      name: 'invoice-payment',
      patterns: ['\\bpay\\b.*\\binvoice\\b', '\\binvoice\\b.*\\bpay(?:ment)?\\b'],
      subtasks: [
        { id: 'ocr', capability: '/capability/vision/ocr', input: { document: '{{input.document}}' } },
        { id: 'extract', capability: '/capability/data/extract/invoice', dependsOn: ['ocr'], input: { text: '{{ocr.output.text}}' } },
        { id: 'screen', capability: '/capability/security/fraud-check', dependsOn: ['extract'], input: { invoice: '{{extract.output}}' } },
        { id: 'pay', capability: '/capability/payments/transfer', dependsOn: ['extract', 'screen'], input: { invoice: '{{extract.output}}', clearance: '{{screen.output}}' } },
      ],
    },
  ],
};
